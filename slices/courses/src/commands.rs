use counterpoint_sdk::prelude::*;

use crate::events::{
    CourseCapacityChanged, CourseDefined, StudentSubscribedToCourse, StudentUnsubscribedFromCourse, course_tag,
    student_tag,
};
use crate::projections::{StudentCourses, StudentRef};
use crate::seats::{capacity, seats_taken};

/// The most courses a student may be subscribed to at once.
pub const MAX_COURSES_PER_STUDENT: usize = 5;

/// What `define-course` and `change-capacity` return.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct CourseReceipt {
    pub course_id: String,
    pub capacity: u32,
    /// Students subscribed now.
    pub subscribed: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DefineCourse {
    pub course_id: String,
    pub capacity: u32,
}

impl Command for DefineCourse {
    const NAME: &'static str = "define-course";
    const DESCRIPTION: &'static str = "Defines a new course with a number of seats";
    type Output = CourseReceipt;

    // The boundary: whether the course was defined, nothing else.
    fn run(self, ctx: &mut Context) -> Result<CourseReceipt, Error> {
        not_empty(&[("course_id", &self.course_id)])?;
        at_least_one_seat(self.capacity)?;
        let defined = ctx.read(Query::of::<CourseDefined>().tag(course_tag(&self.course_id)))?;
        if defined.has::<CourseDefined>() {
            return Err(Error::rejected(format!("course {} is already defined", self.course_id)));
        }
        let Self { course_id, capacity } = self;
        ctx.append(CourseDefined { course_id: course_id.clone(), capacity });
        Ok(CourseReceipt { course_id, capacity, subscribed: 0 })
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ChangeCapacity {
    pub course_id: String,
    pub capacity: u32,
}

impl Command for ChangeCapacity {
    const NAME: &'static str = "change-capacity";
    const DESCRIPTION: &'static str = "Changes a course's number of seats, never below its subscriptions";
    type Output = CourseReceipt;

    // The boundary: the course's definition and its seats. Not its capacity: the new one
    // replaces it whatever it is, so two changes of capacity do not conflict. The seats are read
    // from the course's last seat event alone, however many students it has (`seats`).
    fn run(self, ctx: &mut Context) -> Result<CourseReceipt, Error> {
        not_empty(&[("course_id", &self.course_id)])?;
        at_least_one_seat(self.capacity)?;
        let defined = ctx.read(Query::of::<CourseDefined>().tag(course_tag(&self.course_id)))?;
        let Self { course_id, capacity } = self;
        if !defined.has::<CourseDefined>() {
            return Err(Error::rejected(format!("course {course_id} does not exist")));
        }
        let subscribed = seats_taken(ctx, &course_id)?;
        if capacity < subscribed {
            return Err(Error::rejected(format!(
                "course {course_id} has {subscribed} students subscribed: its capacity cannot be {capacity}"
            )));
        }
        ctx.append(CourseCapacityChanged { course_id: course_id.clone(), capacity });
        Ok(CourseReceipt { course_id, capacity, subscribed })
    }
}

/// What `subscribe-student` returns.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub course_id: String,
    pub student_id: String,
    /// The course's free seats after this subscription.
    pub seats_left: u32,
    /// How many courses the student is subscribed to now, this one included.
    pub student_courses: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SubscribeStudent {
    pub course_id: String,
    pub student_id: String,
}

impl Command for SubscribeStudent {
    const NAME: &'static str = "subscribe-student";
    const DESCRIPTION: &'static str =
        "Subscribes a student to a course that has a free seat, up to 5 courses per student";
    type Output = Subscription;

    // Two boundaries: the course's (defined? its capacity? its seats taken?) and the student's
    // subscriptions. The course's is the hot one, so it is read in bounded time: its last
    // capacity event and its last seat event, which carries the seats taken (`seats`); a
    // racing subscription to the course still fails this one's append, which then runs again
    // and reads it. The student's subscriptions are few: read in full, they also say whether the
    // student is already subscribed to this course.
    fn run(self, ctx: &mut Context) -> Result<Subscription, Error> {
        not_empty(&[("course_id", &self.course_id), ("student_id", &self.student_id)])?;
        let Self { course_id, student_id } = self;
        let Some(capacity) = capacity(ctx, &course_id)? else {
            return Err(Error::rejected(format!("course {course_id} does not exist")));
        };
        let student: StudentCourses = ctx.fold(StudentRef { student_id: student_id.clone() })?;
        if student.courses.contains(&course_id) {
            return Err(Error::rejected(format!("student {student_id} is already subscribed to course {course_id}")));
        }
        let taken = seats_taken(ctx, &course_id)?;
        if taken >= capacity {
            return Err(Error::rejected(format!("course {course_id} is full: all {capacity} seats are taken")));
        }
        if student.courses.len() >= MAX_COURSES_PER_STUDENT {
            return Err(Error::rejected(format!(
                "student {student_id} is already subscribed to {MAX_COURSES_PER_STUDENT} courses, the most a student may take"
            )));
        }
        ctx.append(StudentSubscribedToCourse {
            course_id: course_id.clone(),
            student_id: student_id.clone(),
            seats_taken: Some(taken + 1),
        });
        Ok(Subscription {
            seats_left: capacity - taken - 1,
            student_courses: count(&student.courses) + 1,
            course_id,
            student_id,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UnsubscribeStudent {
    pub course_id: String,
    pub student_id: String,
}

impl Command for UnsubscribeStudent {
    const NAME: &'static str = "unsubscribe-student";
    const DESCRIPTION: &'static str = "Unsubscribes a student from a course";
    type Output = ();

    // The boundaries: this student's subscriptions to this course, and the course's seats (the
    // unsubscription carries the seats taken after it): two unsubscriptions from one course
    // conflict, as a subscription and an unsubscription do; other courses' do not.
    fn run(self, ctx: &mut Context) -> Result<(), Error> {
        not_empty(&[("course_id", &self.course_id), ("student_id", &self.student_id)])?;
        let events = ctx.read(
            Query::of::<StudentSubscribedToCourse>()
                .or_of::<StudentUnsubscribedFromCourse>()
                .tag(course_tag(&self.course_id))
                .tag(student_tag(&self.student_id)),
        )?;
        let Self { course_id, student_id } = self;
        if !events.last().is_some_and(Envelope::is::<StudentSubscribedToCourse>) {
            return Err(Error::rejected(format!("student {student_id} is not subscribed to course {course_id}")));
        }
        let Some(taken) = seats_taken(ctx, &course_id)?.checked_sub(1) else {
            return Err(Error::store(format!(
                "course {course_id} counts no seat taken while student {student_id} is subscribed: its seat events disagree"
            )));
        };
        ctx.append(StudentUnsubscribedFromCourse { course_id, student_id, seats_taken: Some(taken) });
        Ok(())
    }
}

fn not_empty(fields: &[(&str, &str)]) -> Result<(), Error> {
    match fields.iter().find(|(_, value)| value.is_empty()) {
        Some((name, _)) => Err(Error::invalid_input(format!("{name} must not be empty"))),
        None => Ok(()),
    }
}

fn at_least_one_seat(capacity: u32) -> Result<(), Error> {
    match capacity {
        0 => Err(Error::invalid_input("capacity must be at least 1")),
        _ => Ok(()),
    }
}

/// How many of a list: students of a course (at most its capacity, a u32) or courses of a student.
fn count(list: &[String]) -> u32 {
    u32::try_from(list.len()).unwrap_or(u32::MAX)
}
