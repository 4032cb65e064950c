use counterpoint_sdk::testing::TestStore;
use counterpoint_sdk::prelude::*;
use counterpoint_sdk::{RawEvent, ReadResult, Slice, Store};

use crate::*;

fn define(store: &mut TestStore, course_id: &str, capacity: u32) -> Result<CourseReceipt, Error> {
    store.run(DefineCourse { course_id: course_id.into(), capacity })
}

fn subscribe(store: &mut TestStore, course_id: &str, student_id: &str) -> Result<Subscription, Error> {
    store.run(SubscribeStudent { course_id: course_id.into(), student_id: student_id.into() })
}

fn unsubscribe(store: &mut TestStore, course_id: &str, student_id: &str) -> Result<(), Error> {
    store.run(UnsubscribeStudent { course_id: course_id.into(), student_id: student_id.into() })
}

fn course(store: &mut TestStore, course_id: &str) -> Result<Course, Error> {
    #[derive(Serialize)]
    struct Params<'a> {
        course_id: &'a str,
    }
    store.project::<Course>(&Params { course_id })
}

fn courses_of(store: &mut TestStore, student_id: &str) -> Vec<String> {
    #[derive(Serialize)]
    struct Params<'a> {
        student_id: &'a str,
    }
    store.project::<StudentCourses>(&Params { student_id }).unwrap().courses
}

fn rejected<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result {
        Err(Error::Rejected(m)) => m,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn courses_are_defined_and_students_subscribe() {
    let mut store = TestStore::new();
    let receipt = define(&mut store, "c-1", 2).unwrap();
    assert_eq!(receipt, CourseReceipt { course_id: "c-1".into(), capacity: 2, subscribed: 0 });
    let s = subscribe(&mut store, "c-1", "ada").unwrap();
    assert_eq!(
        s,
        Subscription { course_id: "c-1".into(), student_id: "ada".into(), seats_left: 1, student_courses: 1 }
    );
    assert_eq!(subscribe(&mut store, "c-1", "bob").unwrap().seats_left, 0);
    let subscribed = store.events().last().unwrap();
    assert_eq!(subscribed.event_type(), "StudentSubscribedToCourse");
    assert_eq!(subscribed.tags(), ["course:c-1", "student:bob"], "both boundaries' tags");
    assert_eq!(subscribed.metadata("command"), Some("subscribe-student"));
    assert_eq!(store.events()[0].tags(), ["course:c-1"]);

    let c = course(&mut store, "c-1").unwrap();
    assert_eq!((c.capacity, c.students.as_slice()), (2, ["ada".to_string(), "bob".to_string()].as_slice()));
    assert_eq!(courses_of(&mut store, "ada"), ["c-1"]);
    assert!(courses_of(&mut store, "cyd").is_empty(), "a student without subscriptions has no courses");
    assert!(matches!(course(&mut store, "c-9"), Err(Error::NotFound(_))));
}

#[test]
fn define_and_change_capacity_are_rejected() {
    let mut store = TestStore::new();
    define(&mut store, "c-1", 3).unwrap();
    assert_eq!(rejected(define(&mut store, "c-1", 5)), "course c-1 is already defined");
    let change = |course_id: &str, capacity| ChangeCapacity { course_id: course_id.into(), capacity };
    assert_eq!(rejected(store.run(change("c-9", 5))), "course c-9 does not exist");
    for student in ["ada", "bob"] {
        subscribe(&mut store, "c-1", student).unwrap();
    }
    assert_eq!(
        rejected(store.run(change("c-1", 1))),
        "course c-1 has 2 students subscribed: its capacity cannot be 1"
    );
    // Down to exactly the subscriptions: the course is full then.
    let receipt = store.run(change("c-1", 2)).unwrap();
    assert_eq!(receipt, CourseReceipt { course_id: "c-1".into(), capacity: 2, subscribed: 2 });
    assert_eq!(rejected(subscribe(&mut store, "c-1", "cyd")), "course c-1 is full: all 2 seats are taken");
    store.run(change("c-1", 4)).unwrap();
    assert_eq!(subscribe(&mut store, "c-1", "cyd").unwrap().seats_left, 1);
    assert_eq!(course(&mut store, "c-1").unwrap().capacity, 4);
}

#[test]
fn subscriptions_are_rejected() {
    let mut store = TestStore::new();
    assert_eq!(rejected(subscribe(&mut store, "c-1", "ada")), "course c-1 does not exist");
    define(&mut store, "c-1", 1).unwrap();
    subscribe(&mut store, "c-1", "ada").unwrap();
    assert_eq!(rejected(subscribe(&mut store, "c-1", "ada")), "student ada is already subscribed to course c-1");
    assert_eq!(rejected(subscribe(&mut store, "c-1", "bob")), "course c-1 is full: all 1 seats are taken");
    // An unsubscription frees the seat.
    unsubscribe(&mut store, "c-1", "ada").unwrap();
    assert_eq!(rejected(unsubscribe(&mut store, "c-1", "ada")), "student ada is not subscribed to course c-1");
    assert_eq!(rejected(unsubscribe(&mut store, "c-9", "bob")), "student bob is not subscribed to course c-9");
    subscribe(&mut store, "c-1", "bob").unwrap();
    assert_eq!(course(&mut store, "c-1").unwrap().students, ["bob"]);
    assert!(courses_of(&mut store, "ada").is_empty());
    // Nothing was appended by a rejected command.
    assert_eq!(store.events().len(), 4);
}

#[test]
fn a_student_takes_at_most_five_courses() {
    let mut store = TestStore::new();
    for i in 1..=7 {
        define(&mut store, &format!("c-{i}"), 10).unwrap();
    }
    for i in 1..=MAX_COURSES_PER_STUDENT {
        assert_eq!(subscribe(&mut store, &format!("c-{i}"), "ada").unwrap().student_courses as usize, i);
    }
    assert_eq!(
        rejected(subscribe(&mut store, "c-6", "ada")),
        "student ada is already subscribed to 5 courses, the most a student may take"
    );
    // Other students are not limited by ada's courses.
    subscribe(&mut store, "c-6", "bob").unwrap();
    unsubscribe(&mut store, "c-2", "ada").unwrap();
    assert_eq!(subscribe(&mut store, "c-6", "ada").unwrap().student_courses, 5);
    assert_eq!(courses_of(&mut store, "ada"), ["c-1", "c-3", "c-4", "c-5", "c-6"]);
    assert!(rejected(subscribe(&mut store, "c-7", "ada")).contains("5 courses"));
}

#[test]
fn invalid_input() {
    let mut store = TestStore::new();
    assert!(matches!(define(&mut store, "c-1", 0), Err(Error::InvalidInput(m)) if m == "capacity must be at least 1"));
    assert!(matches!(define(&mut store, "", 1), Err(Error::InvalidInput(m)) if m == "course_id must not be empty"));
    define(&mut store, "c-1", 1).unwrap();
    let zero = ChangeCapacity { course_id: "c-1".into(), capacity: 0 };
    assert!(matches!(store.run(zero), Err(Error::InvalidInput(_))));
    assert!(matches!(subscribe(&mut store, "c-1", ""), Err(Error::InvalidInput(m)) if m == "student_id must not be empty"));
    #[derive(Serialize)]
    struct Negative<'a> {
        course_id: &'a str,
        capacity: i64,
    }
    assert!(matches!(
        store.execute::<CounterpointSlice>("define-course", &Negative { course_id: "c-2", capacity: -1 }),
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(store.events().len(), 1);
}

/// A command run against the store without changing it: what it read and what it would append.
struct DryRun<'a> {
    store: &'a mut TestStore,
    reads: Vec<Query>,
    /// How many events each read returned.
    read_events: Vec<usize>,
    appended: Vec<RawEvent>,
}

impl Store for DryRun<'_> {
    fn read(&mut self, query: &Query, options: ReadOptions) -> Result<ReadResult, Error> {
        // Every read guards its whole query after the head (see `conflict`): a forward read cut
        // by its limit would guard less, and none of these commands makes one.
        assert!(options.backwards || options.limit.is_none(), "a forward read cut by a limit: {query:?}");
        self.reads.push(query.clone());
        let result = self.store.read(query, options)?;
        self.read_events.push(result.events.len());
        Ok(result)
    }

    fn append(&mut self, events: &[RawEvent]) -> Result<(), Error> {
        self.appended.extend_from_slice(events);
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Cmd<'a> {
    Define(&'a str),
    Capacity(&'a str, u32),
    Subscribe(&'a str, &'a str),
    Unsubscribe(&'a str, &'a str),
}

/// Runs `cmd` dry: its reads and the events it would append.
fn dry_run(store: &mut TestStore, cmd: Cmd) -> (Vec<Query>, Vec<RawEvent>) {
    let dry = dry_run_counted(store, cmd);
    (dry.reads, dry.appended)
}

/// Runs `cmd` dry: what it read (and how many events each read returned) and would append.
fn dry_run_counted<'a>(store: &'a mut TestStore, cmd: Cmd) -> DryRun<'a> {
    let mut dry = DryRun { store, reads: Vec::new(), read_events: Vec::new(), appended: Vec::new() };
    let result = match cmd {
        Cmd::Define(c) => exec(&mut dry, DefineCourse::NAME, &DefineCourse { course_id: c.into(), capacity: 5 }),
        Cmd::Capacity(c, capacity) => {
            exec(&mut dry, ChangeCapacity::NAME, &ChangeCapacity { course_id: c.into(), capacity })
        }
        Cmd::Subscribe(c, s) => {
            exec(&mut dry, SubscribeStudent::NAME, &SubscribeStudent { course_id: c.into(), student_id: s.into() })
        }
        Cmd::Unsubscribe(c, s) => {
            exec(&mut dry, UnsubscribeStudent::NAME, &UnsubscribeStudent { course_id: c.into(), student_id: s.into() })
        }
    };
    result.unwrap();
    dry
}

fn exec(store: &mut dyn Store, command: &str, payload: &impl Serialize) -> Result<Vec<u8>, Error> {
    CounterpointSlice::execute(store, command, &rmp_serde::to_vec_named(payload).unwrap())
}

/// Whether `a` and `b`, decided on the same log at once, conflict: the one that appends second
/// fails its append condition when the other's events match what it read.
fn conflict(store: &mut TestStore, a: Cmd, b: Cmd) -> bool {
    let (reads_a, events_a) = dry_run(store, a);
    let (reads_b, events_b) = dry_run(store, b);
    let hits = |reads: &[Query], events: &[RawEvent]| {
        events.iter().any(|e| reads.iter().any(|q| q.matches(&e.event_type, &e.tags)))
    };
    hits(&reads_a, &events_b) || hits(&reads_b, &events_a)
}

#[test]
fn each_command_is_guarded_by_exactly_its_boundaries() {
    use Cmd::*;
    let mut store = TestStore::new();
    for c in ["c-1", "c-2"] {
        define(&mut store, c, 10).unwrap();
    }
    for (c, s) in [("c-1", "ada"), ("c-2", "bob"), ("c-1", "eve")] {
        subscribe(&mut store, c, s).unwrap();
    }
    let cases = [
        // Different courses, different students: independent.
        (Subscribe("c-1", "cyd"), Subscribe("c-2", "dan"), false),
        // One course: its capacity.
        (Subscribe("c-1", "cyd"), Subscribe("c-1", "dan"), true),
        // One student: the 5-course limit.
        (Subscribe("c-1", "cyd"), Subscribe("c-2", "cyd"), true),
        // A seat freed or taken, or the capacity changed: the course's boundary.
        (Subscribe("c-1", "cyd"), Unsubscribe("c-1", "ada"), true),
        (Subscribe("c-1", "cyd"), Capacity("c-1", 20), true),
        (Subscribe("c-2", "ada"), Unsubscribe("c-1", "ada"), true),
        (Capacity("c-1", 3), Subscribe("c-2", "cyd"), false),
        (Capacity("c-1", 3), Unsubscribe("c-1", "ada"), true),
        // The new capacity replaces the old whatever it was.
        (Capacity("c-1", 3), Capacity("c-1", 4), false),
        // An unsubscription depends on that subscription and on its course's seats.
        (Unsubscribe("c-1", "ada"), Unsubscribe("c-2", "bob"), false),
        (Unsubscribe("c-1", "ada"), Subscribe("c-2", "cyd"), false),
        (Unsubscribe("c-1", "ada"), Unsubscribe("c-1", "eve"), true),
        (Define("c-3"), Define("c-3"), true),
        (Define("c-3"), Subscribe("c-1", "cyd"), false),
        (Define("c-3"), Capacity("c-1", 3), false),
    ];
    for (i, (a, b, expected)) in cases.into_iter().enumerate() {
        assert_eq!(conflict(&mut store, a, b), expected, "case {i}");
    }
    assert_eq!(store.events().len(), 5, "dry runs append nothing");
}

#[test]
fn describes_itself_and_tags_events() {
    let d = CounterpointSlice::describe();
    assert_eq!((d.name.as_str(), d.version.as_str()), ("courses", "0.1.0"));
    let commands: Vec<&str> = d.commands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(commands, ["define-course", "change-capacity", "subscribe-student", "unsubscribe-student"]);
    let fields: Vec<(&str, &str)> = d.commands[0].fields.iter().map(|f| (f.name.as_str(), f.kind.as_str())).collect();
    assert_eq!(fields, [("course_id", "string"), ("capacity", "integer")]);
    let projections: Vec<&str> = d.projections.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(projections, ["course", "student-courses"]);
    assert_eq!(
        d.emits,
        ["CourseDefined", "CourseCapacityChanged", "StudentSubscribedToCourse", "StudentUnsubscribedFromCourse"]
    );
    let data = rmp_serde::to_vec_named(&StudentUnsubscribedFromCourse {
        course_id: "c-1".into(),
        student_id: "ada".into(),
        seats_taken: Some(0),
    })
    .unwrap();
    assert_eq!(CounterpointSlice::tags("StudentUnsubscribedFromCourse", &data).unwrap(), ["course:c-1", "student:ada"]);
    assert!(matches!(CounterpointSlice::tags("OrderPlaced", &data), Err(Error::NotFound(_))));
}

/// The seats taken that each seat event of `course_id` carries, in order.
fn carried_counts(store: &TestStore, course_id: &str) -> Vec<Option<u32>> {
    store
        .events()
        .iter()
        .filter(|e| e.tags().contains(&course_tag(course_id)))
        .filter_map(|e| match e.event_type() {
            StudentSubscribedToCourse::TYPE => Some(e.decode::<StudentSubscribedToCourse>().unwrap().seats_taken),
            StudentUnsubscribedFromCourse::TYPE => Some(e.decode::<StudentUnsubscribedFromCourse>().unwrap().seats_taken),
            _ => None,
        })
        .collect()
}

#[test]
fn every_seat_event_carries_the_seats_taken_after_it() {
    let mut store = TestStore::new();
    define(&mut store, "c-1", 3).unwrap();
    define(&mut store, "c-2", 3).unwrap();
    subscribe(&mut store, "c-1", "ada").unwrap();
    subscribe(&mut store, "c-2", "ada").unwrap();
    subscribe(&mut store, "c-1", "bob").unwrap();
    unsubscribe(&mut store, "c-1", "ada").unwrap();
    subscribe(&mut store, "c-1", "cyd").unwrap();
    subscribe(&mut store, "c-1", "ada").unwrap();
    assert_eq!(carried_counts(&store, "c-1"), [Some(1), Some(2), Some(1), Some(2), Some(3)]);
    assert_eq!(carried_counts(&store, "c-2"), [Some(1)], "each course counts its own seats");
    assert_eq!(rejected(subscribe(&mut store, "c-1", "dan")), "course c-1 is full: all 3 seats are taken");
    store.run(ChangeCapacity { course_id: "c-1".into(), capacity: 4 }).unwrap();
    assert_eq!(subscribe(&mut store, "c-1", "dan").unwrap().seats_left, 0);
    // The count agrees with the course as its projection folds it from every event.
    let students = course(&mut store, "c-1").unwrap().students;
    assert_eq!(carried_counts(&store, "c-1").last(), Some(&Some(students.len() as u32)));
}

/// A course's decisions read its last seat event, not all of them: as many events for a course
/// of 300 students as for one of 3.
#[test]
fn a_decision_reads_the_course_in_bounded_time() {
    let mut store = TestStore::new();
    define(&mut store, "c-1", 1_000).unwrap();
    let mut read_by_size = Vec::new();
    for students in [3usize, 300] {
        while course(&mut store, "c-1").unwrap().students.len() < students {
            let n = course(&mut store, "c-1").unwrap().students.len();
            subscribe(&mut store, "c-1", &format!("s-{n}")).unwrap();
        }
        let counts: Vec<usize> = [
            Cmd::Subscribe("c-1", "new"),
            Cmd::Unsubscribe("c-1", "s-0"),
            Cmd::Capacity("c-1", 999),
        ]
        .into_iter()
        .map(|cmd| dry_run_counted(&mut store, cmd).read_events.iter().sum())
        .collect();
        read_by_size.push(counts);
    }
    assert_eq!(read_by_size[0], read_by_size[1], "events read by subscribe, unsubscribe, change-capacity");
    // Subscribe: the last capacity event and the last seat event (the new student has none).
    assert_eq!(read_by_size[0][0], 2);
}

/// A log written before seat events carried the count (no `seats_taken`): decisions count the
/// course's seat events instead, and the next seat event carries the count again.
#[test]
fn a_log_without_counts_is_counted_once() {
    let mut store = TestStore::new();
    define(&mut store, "c-1", 3).unwrap();
    let legacy = |student: &str| StudentSubscribedToCourse { course_id: "c-1".into(), student_id: student.into(), seats_taken: None };
    store.given(legacy("ada")).given(legacy("bob"));
    store.given(StudentUnsubscribedFromCourse { course_id: "c-1".into(), student_id: "ada".into(), seats_taken: None });
    store.given(legacy("cyd"));
    assert_eq!(subscribe(&mut store, "c-1", "dan").unwrap().seats_left, 0, "bob, cyd and dan");
    assert_eq!(carried_counts(&store, "c-1").last(), Some(&Some(3)));
    assert_eq!(rejected(subscribe(&mut store, "c-1", "eve")), "course c-1 is full: all 3 seats are taken");
    unsubscribe(&mut store, "c-1", "bob").unwrap();
    assert_eq!(carried_counts(&store, "c-1").last(), Some(&Some(2)));
    // Events without the count are written as before: no `seats_taken` field at all.
    let data = rmp_serde::to_vec_named(&legacy("ada")).unwrap();
    let fields: std::collections::BTreeMap<String, String> = rmp_serde::from_slice(&data).unwrap();
    assert_eq!(fields.keys().collect::<Vec<_>>(), ["course_id", "student_id"]);
}
