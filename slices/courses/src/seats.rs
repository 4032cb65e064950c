//! The course's side of a decision, read in bounded time however many students it has.
//!
//! A busy course is a hot boundary: every subscription to it is decided on its seats, one after
//! another. Folding all of its subscriptions to count them would make each decision read more
//! than the one before (a thousand events for a course of a thousand students). Instead every
//! seat event carries the count after it (`seats_taken`), and a decision reads only the last
//! one: "the last 1" backwards. That read is still guarded like a full one: a backwards read
//! cut by its limit has seen everything newer than its event, so its consistency position is
//! the head of the log when it read, and the append fails if *any* seat event of the course was
//! appended since (a racing subscription runs again and counts it).

use counterpoint_sdk::prelude::*;

use crate::events::{
    CourseCapacityChanged, CourseDefined, StudentSubscribedToCourse, StudentUnsubscribedFromCourse, course_tag,
};

/// The course's seat events: its subscriptions and unsubscriptions.
pub fn seat_events(course_id: &str) -> Query {
    Query::of::<StudentSubscribedToCourse>().or_of::<StudentUnsubscribedFromCourse>().tag(course_tag(course_id))
}

/// The events that set a course's capacity: its definition and its changes.
pub fn capacity_events(course_id: &str) -> Query {
    Query::of::<CourseDefined>().or_of::<CourseCapacityChanged>().tag(course_tag(course_id))
}

/// How many seats of the course are taken: the count its last seat event carries. A course
/// whose last seat event was written before the count was kept has its seat events counted
/// (read in full, once: the next seat event carries the count again).
pub fn seats_taken(ctx: &mut Context, course_id: &str) -> Result<u32, Error> {
    let last = ctx.read_with(seat_events(course_id), ReadOptions::last(1))?;
    let Some(event) = last.first() else { return Ok(0) };
    if let Some(taken) = carried_count(event)? {
        return Ok(taken);
    }
    let mut students: Vec<String> = Vec::new();
    for event in &ctx.read(seat_events(course_id))? {
        match event.event_type() {
            StudentSubscribedToCourse::TYPE => students.push(event.decode::<StudentSubscribedToCourse>()?.student_id),
            StudentUnsubscribedFromCourse::TYPE => {
                let student = event.decode::<StudentUnsubscribedFromCourse>()?.student_id;
                students.retain(|s| *s != student);
            }
            _ => {}
        }
    }
    Ok(u32::try_from(students.len()).unwrap_or(u32::MAX))
}

/// The seats taken after a seat event, if it carries the count.
fn carried_count(event: &Envelope) -> Result<Option<u32>, Error> {
    Ok(match event.event_type() {
        StudentSubscribedToCourse::TYPE => event.decode::<StudentSubscribedToCourse>()?.seats_taken,
        StudentUnsubscribedFromCourse::TYPE => event.decode::<StudentUnsubscribedFromCourse>()?.seats_taken,
        _ => None,
    })
}

/// The course's capacity, from its last definition or change; `None` when it was never defined.
pub fn capacity(ctx: &mut Context, course_id: &str) -> Result<Option<u32>, Error> {
    let last = ctx.read_with(capacity_events(course_id), ReadOptions::last(1))?;
    let Some(event) = last.first() else { return Ok(None) };
    Ok(Some(match event.event_type() {
        CourseDefined::TYPE => event.decode::<CourseDefined>()?.capacity,
        _ => event.decode::<CourseCapacityChanged>()?.capacity,
    }))
}
