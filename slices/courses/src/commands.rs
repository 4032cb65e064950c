use counterpoint_sdk::prelude::*;

use crate::events::{
    CourseCapacityChanged, CourseDefined, StudentSubscribedToCourse, StudentUnsubscribedFromCourse, course_tag,
    student_tag,
};
use crate::projections::{Course, CourseRef, StudentCourses, StudentRef, fold};

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

    // The boundary: the course's definition and its subscriptions. Not its capacity: the new one
    // replaces it whatever it is, so two changes of capacity do not conflict.
    fn run(self, ctx: &mut Context) -> Result<CourseReceipt, Error> {
        not_empty(&[("course_id", &self.course_id)])?;
        at_least_one_seat(self.capacity)?;
        let course_ref = CourseRef { course_id: self.course_id.clone() };
        let events = ctx.read(
            Query::of::<CourseDefined>()
                .or_of::<StudentSubscribedToCourse>()
                .or_of::<StudentUnsubscribedFromCourse>()
                .tag(course_tag(&self.course_id)),
        )?;
        let course: Course = fold(&course_ref, events.iter())?;
        let Self { course_id, capacity } = self;
        if !course.defined {
            return Err(Error::rejected(format!("course {course_id} does not exist")));
        }
        let subscribed = count(&course.students);
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

    // Two boundaries in one read: the course's events (defined? capacity? who is subscribed?)
    // and the student's subscriptions. A subscription event carries both tags, so it is read
    // once and counts on both sides.
    fn run(self, ctx: &mut Context) -> Result<Subscription, Error> {
        not_empty(&[("course_id", &self.course_id), ("student_id", &self.student_id)])?;
        let course_ref = CourseRef { course_id: self.course_id.clone() };
        let student_ref = StudentRef { student_id: self.student_id.clone() };
        let events = ctx.read(Course::source(&course_ref).or(StudentCourses::source(&student_ref)))?;
        let (course_tag, student_tag) = (course_tag(&self.course_id), student_tag(&self.student_id));
        let course: Course = fold(&course_ref, events.iter().filter(|e| e.tags().contains(&course_tag)))?;
        let student: StudentCourses = fold(&student_ref, events.iter().filter(|e| e.tags().contains(&student_tag)))?;

        let Self { course_id, student_id } = self;
        if !course.defined {
            return Err(Error::rejected(format!("course {course_id} does not exist")));
        }
        if course.students.contains(&student_id) {
            return Err(Error::rejected(format!("student {student_id} is already subscribed to course {course_id}")));
        }
        if course.is_full() {
            return Err(Error::rejected(format!(
                "course {course_id} is full: all {} seats are taken",
                course.capacity
            )));
        }
        if student.courses.len() >= MAX_COURSES_PER_STUDENT {
            return Err(Error::rejected(format!(
                "student {student_id} is already subscribed to {MAX_COURSES_PER_STUDENT} courses, the most a student may take"
            )));
        }
        ctx.append(StudentSubscribedToCourse { course_id: course_id.clone(), student_id: student_id.clone() });
        Ok(Subscription {
            seats_left: course.capacity - count(&course.students) - 1,
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

    // The boundary: this student's subscriptions to this course only (events with both tags),
    // so it conflicts with nobody else's subscriptions.
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
        ctx.append(StudentUnsubscribedFromCourse { course_id, student_id });
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
