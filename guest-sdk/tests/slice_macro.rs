//! `slice!` as a slice crate uses it, natively: dispatch by name, describe, projections
//! through the erased path the WIT resource uses, automations.

use counterpoint_sdk::__private::Running;
use counterpoint_sdk::prelude::*;
use counterpoint_sdk::testing::TestStore;
use counterpoint_sdk::{RawEvent, Slice};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Noted {
    topic: String,
    text: String,
}

impl Event for Noted {
    const TYPE: &'static str = "Noted";
    fn tags(&self) -> Vec<String> {
        vec![tag("topic", &self.topic)]
    }
}

#[derive(Deserialize)]
struct Note {
    topic: String,
    texts: Vec<String>,
}

impl Command for Note {
    const NAME: &'static str = "note";
    const DESCRIPTION: &'static str = "Notes texts on a topic";
    type Output = usize;
    fn run(self, ctx: &mut Context) -> Result<usize, Error> {
        let topic = self.topic;
        ctx.append_all(self.texts.into_iter().map(|text| Noted {
            topic: topic.clone(),
            text,
        }));
        Ok(ctx
            .read(Query::of::<Noted>().tag(tag("topic", &topic)))?
            .len())
    }
}

#[derive(Deserialize)]
struct TopicRef {
    topic: String,
    last: Option<u64>,
}

#[derive(Default)]
struct Texts(Vec<String>);

impl Projection for Texts {
    const NAME: &'static str = "texts";
    type Params = TopicRef;
    type Output = Vec<String>;
    fn init(_: &TopicRef) -> Self {
        Texts::default()
    }
    fn source(params: &TopicRef) -> Query {
        Query::of::<Noted>().tag(tag("topic", &params.topic))
    }
    fn options(params: &TopicRef) -> ReadOptions {
        params.last.map_or_else(ReadOptions::new, ReadOptions::last)
    }
    fn apply(&mut self, event: &Envelope) -> Result<(), Error> {
        self.0.push(event.decode::<Noted>()?.text);
        Ok(())
    }
    fn output(self) -> Result<Vec<String>, Error> {
        Ok(self.0)
    }
}

struct Echo;

impl Automation for Echo {
    const NAME: &'static str = "echo";
    fn query() -> Query {
        Query::of::<Noted>()
    }
    fn react(event: &Envelope) -> Result<Vec<CommandCall>, Error> {
        #[derive(Serialize)]
        struct Shout {
            text: String,
        }
        let text = event.decode::<Noted>()?.text.to_uppercase();
        Ok(vec![CommandCall::new("other", "shout", &Shout { text })?])
    }
}

counterpoint_sdk::slice! {
    name: "notes", version: "1.2.3",
    events: [Noted],
    commands: [Note],
    projections: [Texts],
    automations: [Echo],
}

fn msgpack(value: &impl Serialize) -> Vec<u8> {
    rmp_serde::to_vec_named(value).unwrap()
}

#[derive(Serialize)]
struct NoteInput<'a> {
    topic: &'a str,
    texts: &'a [&'a str],
}

#[test]
fn commands_append_once_and_read_their_boundary() {
    let mut store = TestStore::new();
    let out = store.execute::<CounterpointSlice>(
        "note",
        &NoteInput {
            topic: "a",
            texts: &["x", "y"],
        },
    );
    // The read happens before the append: the command saw no notes yet.
    assert_eq!(rmp_serde::from_slice::<usize>(&out.unwrap()).unwrap(), 0);
    assert_eq!(store.events().len(), 2);
    assert!(
        store
            .events()
            .iter()
            .all(|e| e.metadata("command") == Some("note"))
    );
}

#[test]
fn projections_run_through_the_resource_path() {
    let mut store = TestStore::new();
    store
        .execute::<CounterpointSlice>(
            "note",
            &NoteInput {
                topic: "a",
                texts: &["x", "y", "z"],
            },
        )
        .unwrap();
    store
        .execute::<CounterpointSlice>(
            "note",
            &NoteInput {
                topic: "b",
                texts: &["w"],
            },
        )
        .unwrap();
    #[derive(Serialize)]
    struct Params<'a> {
        topic: &'a str,
        last: Option<u64>,
    }
    let mut running: Box<dyn Running> = CounterpointSlice::open(
        "texts",
        &msgpack(&Params {
            topic: "a",
            last: Some(2),
        }),
    )
    .unwrap();
    let (query, options) = running.source();
    assert_eq!(query, Query::of::<Noted>().tag("topic:a"));
    assert_eq!(options, ReadOptions::last(2));
    // The host feeds batches; here, one event at a time, newest first.
    let events = counterpoint_sdk::Store::read(&mut store, &query, options)
        .unwrap()
        .events;
    for event in events {
        running.fold(vec![event]).unwrap();
    }
    let output: Vec<String> = rmp_serde::from_slice(&running.finish().unwrap()).unwrap();
    assert_eq!(output, ["z", "y"]);
    assert!(matches!(running.finish(), Err(Error::InvalidInput(_))));

    assert!(matches!(
        CounterpointSlice::open("nope", &[]),
        Err(Error::NotFound(_))
    ));
    match CounterpointSlice::open("texts", &[]) {
        Err(Error::InvalidInput(m)) => assert_eq!(m, "missing field `topic`"),
        _ => panic!("expected invalid-input"),
    }
}

#[test]
fn automations_react_with_command_calls() {
    let raw = RawEvent::encode(&Noted {
        topic: "a".into(),
        text: "hi".into(),
    })
    .unwrap();
    let calls = CounterpointSlice::react(
        "echo",
        &Envelope {
            position: (0, 1),
            event: raw.clone(),
        },
    )
    .unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].slice.as_str(), calls[0].command.as_str()),
        ("other", "shout")
    );
    let payload: std::collections::BTreeMap<String, String> =
        rmp_serde::from_slice(&calls[0].payload).unwrap();
    assert_eq!(payload["text"], "HI");
    assert!(matches!(
        CounterpointSlice::react(
            "nope",
            &Envelope {
                position: (0, 1),
                event: raw
            }
        ),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn describes_everything() {
    let d = CounterpointSlice::describe();
    assert_eq!((d.name.as_str(), d.version.as_str()), ("notes", "1.2.3"));
    assert_eq!(d.commands[0].description, "Notes texts on a topic");
    let fields: Vec<(&str, &str)> = d.commands[0]
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.kind.as_str()))
        .collect();
    assert_eq!(fields, [("topic", "string"), ("texts", "list")]);
    assert_eq!(d.projections[0].name, "texts");
    assert_eq!(d.emits, ["Noted"]);
    assert_eq!(d.automations[0].name, "echo");
    assert_eq!(d.automations[0].query, Query::of::<Noted>());
}
