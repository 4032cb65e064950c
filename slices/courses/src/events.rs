use counterpoint_sdk::prelude::*;

/// The tag of a course's events: `course:<id>`.
pub fn course_tag(course_id: &str) -> String {
    tag("course", course_id)
}

/// The tag of a student's events: `student:<id>`.
pub fn student_tag(student_id: &str) -> String {
    tag("student", student_id)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CourseDefined {
    pub course_id: String,
    pub capacity: u32,
}

impl Event for CourseDefined {
    const TYPE: &'static str = "CourseDefined";
    fn tags(&self) -> Vec<String> {
        vec![course_tag(&self.course_id)]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CourseCapacityChanged {
    pub course_id: String,
    pub capacity: u32,
}

impl Event for CourseCapacityChanged {
    const TYPE: &'static str = "CourseCapacityChanged";
    fn tags(&self) -> Vec<String> {
        vec![course_tag(&self.course_id)]
    }
}

/// Part of both boundaries: tagged with the course and with the student.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudentSubscribedToCourse {
    pub course_id: String,
    pub student_id: String,
    /// The course's seats taken after this subscription: the running count a decision reads
    /// from the course's last seat event alone (see [`seats_taken`](crate::seats_taken)).
    /// Absent from events written before the count was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats_taken: Option<u32>,
}

impl Event for StudentSubscribedToCourse {
    const TYPE: &'static str = "StudentSubscribedToCourse";
    fn tags(&self) -> Vec<String> {
        vec![course_tag(&self.course_id), student_tag(&self.student_id)]
    }
}

/// Part of both boundaries: tagged with the course and with the student.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudentUnsubscribedFromCourse {
    pub course_id: String,
    pub student_id: String,
    /// The course's seats taken after this unsubscription (see
    /// [`StudentSubscribedToCourse::seats_taken`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats_taken: Option<u32>,
}

impl Event for StudentUnsubscribedFromCourse {
    const TYPE: &'static str = "StudentUnsubscribedFromCourse";
    fn tags(&self) -> Vec<String> {
        vec![course_tag(&self.course_id), student_tag(&self.student_id)]
    }
}
