//! The courses slice, the classic DCB example: courses are defined with a capacity and students
//! subscribe to them. Subscribing is one decision over two consistency boundaries at once, the
//! course's (is it full?) and the student's (at most [`MAX_COURSES_PER_STUDENT`] courses): its
//! append is guarded by exactly the events it read, so subscriptions to different
//! courses by different students never conflict, while two to one course, or two of one
//! student, do.
//!
//! A course is a hot boundary (many students subscribe to it at once), so its side of a decision
//! is read in bounded time ([`seats_taken`]): every seat event carries the seats taken after it,
//! and a decision reads the last one instead of counting them all.

mod commands;
mod events;
mod projections;
mod seats;

pub use commands::{
    ChangeCapacity, CourseReceipt, DefineCourse, MAX_COURSES_PER_STUDENT, SubscribeStudent, Subscription,
    UnsubscribeStudent,
};
pub use events::{
    CourseCapacityChanged, CourseDefined, StudentSubscribedToCourse, StudentUnsubscribedFromCourse, course_tag,
    student_tag,
};
pub use projections::{Course, CourseRef, StudentCourses, StudentRef};
pub use seats::{capacity, capacity_events, seat_events, seats_taken};

counterpoint_sdk::slice! {
    name: "courses", version: env!("CARGO_PKG_VERSION"),
    events: [CourseDefined, CourseCapacityChanged, StudentSubscribedToCourse, StudentUnsubscribedFromCourse],
    commands: [DefineCourse, ChangeCapacity, SubscribeStudent, UnsubscribeStudent],
    projections: [Course, StudentCourses],
}

#[cfg(test)]
mod tests;
