use counterpoint_sdk::prelude::*;

use crate::events::{
    CourseCapacityChanged, CourseDefined, StudentSubscribedToCourse, StudentUnsubscribedFromCourse, course_tag,
    student_tag,
};

#[derive(Debug, Deserialize)]
pub struct CourseRef {
    pub course_id: String,
}

#[derive(Debug, Deserialize)]
pub struct StudentRef {
    pub student_id: String,
}

/// A course (`course`): its capacity and its students. The course's side of the decisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Course {
    pub course_id: String,
    pub capacity: u32,
    /// The subscribed students, in the order they subscribed.
    pub students: Vec<String>,
    /// Whether the course was defined; not part of the output (an unknown course is `not-found`).
    #[serde(skip)]
    pub defined: bool,
}

impl Course {
    pub fn is_full(&self) -> bool {
        self.students.len() >= self.capacity as usize
    }
}

impl Projection for Course {
    const NAME: &'static str = "course";
    const DESCRIPTION: &'static str = "A course's capacity and the students subscribed to it";
    type Params = CourseRef;
    type Output = Course;

    fn init(params: &CourseRef) -> Self {
        Course { course_id: params.course_id.clone(), capacity: 0, students: Vec::new(), defined: false }
    }

    fn source(params: &CourseRef) -> Query {
        Query::of::<CourseDefined>()
            .or_of::<CourseCapacityChanged>()
            .or_of::<StudentSubscribedToCourse>()
            .or_of::<StudentUnsubscribedFromCourse>()
            .tag(course_tag(&params.course_id))
    }

    fn apply(&mut self, event: &Envelope) -> Result<(), Error> {
        match event.event_type() {
            CourseDefined::TYPE => {
                self.capacity = event.decode::<CourseDefined>()?.capacity;
                self.defined = true;
            }
            CourseCapacityChanged::TYPE => self.capacity = event.decode::<CourseCapacityChanged>()?.capacity,
            StudentSubscribedToCourse::TYPE => {
                self.students.push(event.decode::<StudentSubscribedToCourse>()?.student_id);
            }
            StudentUnsubscribedFromCourse::TYPE => {
                let student = event.decode::<StudentUnsubscribedFromCourse>()?.student_id;
                self.students.retain(|s| *s != student);
            }
            _ => {}
        }
        Ok(())
    }

    fn output(self) -> Result<Course, Error> {
        match self.defined {
            true => Ok(self),
            false => Err(Error::not_found(format!("no course {}", self.course_id))),
        }
    }
}

/// The courses a student is subscribed to (`student-courses`). The student's side of the
/// decisions. Students are not defined: one without subscriptions has no courses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudentCourses {
    pub student_id: String,
    /// Course ids, in the order the student subscribed.
    pub courses: Vec<String>,
}

impl Projection for StudentCourses {
    const NAME: &'static str = "student-courses";
    const DESCRIPTION: &'static str = "The courses a student is subscribed to";
    type Params = StudentRef;
    type Output = StudentCourses;

    fn init(params: &StudentRef) -> Self {
        StudentCourses { student_id: params.student_id.clone(), courses: Vec::new() }
    }

    fn source(params: &StudentRef) -> Query {
        Query::of::<StudentSubscribedToCourse>()
            .or_of::<StudentUnsubscribedFromCourse>()
            .tag(student_tag(&params.student_id))
    }

    fn apply(&mut self, event: &Envelope) -> Result<(), Error> {
        match event.event_type() {
            StudentSubscribedToCourse::TYPE => {
                self.courses.push(event.decode::<StudentSubscribedToCourse>()?.course_id);
            }
            StudentUnsubscribedFromCourse::TYPE => {
                let course = event.decode::<StudentUnsubscribedFromCourse>()?.course_id;
                self.courses.retain(|c| *c != course);
            }
            _ => {}
        }
        Ok(())
    }

    fn output(self) -> Result<StudentCourses, Error> {
        Ok(self)
    }
}
