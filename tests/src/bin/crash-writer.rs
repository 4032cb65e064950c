//! The child process of the crash test: opens the embedded store in the directory given as the
//! first argument (small segments; the second, RUN, numbers its tags), then appends under concurrent load until it is killed.
//!
//! Prints, one line each (stdout is line-buffered: a line is either whole or missing):
//! - `OPENING` before it opens the store and `READY micros` once open (how long recovery took);
//! - `ACK cycle writer seq first count` for every acknowledged append of the independent
//!   writers (each under a condition on its own tag, which holds);
//! - `RACE cycle racer seq position` for every acknowledged append of the racers, which all
//!   append to one tag under the condition that no race event landed after the last one they
//!   read, and `REFUSED cycle racer seq` for every one whose condition failed.
//!
//! Any other outcome is a failure of the store: it says so on stderr and exits with status 3, so
//! the test can tell that from being killed.

use std::time::Instant;

use counterpoint::store::{
    AppendCondition, EmbeddedStore, Event, EventStore, Position, Query, QueryItem, ReadOptions,
    StoreError, Tenant,
};
use counterpoint_tests::crash::{append_tag, event_data, race_data, race_tag, RACERS, RACE_TAG, WRITERS};

fn fail(what: &str, err: impl std::fmt::Display) -> ! {
    eprintln!("crash-writer: {what}: {err}");
    std::process::exit(3);
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: crash-writer DIR RUN");
    let cycle: u64 = args.next().expect("usage: crash-writer DIR RUN").parse().expect("run number");
    println!("OPENING");
    let started = Instant::now();
    let options = counterpoint_tests::crash::options();
    let store = EmbeddedStore::open_with(&dir, options).unwrap_or_else(|e| fail("open", e));
    let tenant = Tenant::new("crash").unwrap();
    println!("READY {}", started.elapsed().as_micros());
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let (store, tenant) = (store.clone(), tenant.clone());
        tasks.push(tokio::spawn(async move {
            for seq in 0u64.. {
                let count = 1 + (seq % 3) as usize;
                let tag = append_tag(cycle, writer, seq);
                let events: Vec<Event> = (0..count)
                    .map(|j| Event::new("Crash").tag(tag.clone()).data(event_data(&tag, j, count, seq)))
                    .collect();
                // A condition probe in every append, as commands make them.
                let condition = AppendCondition::new(Query::item(QueryItem::tags([tag.clone()])), None);
                let positions = store.append(&tenant, events, vec![condition]).await.unwrap_or_else(|e| fail("append", e));
                println!("ACK {cycle} {writer} {seq} {} {count}", positions[0]);
            }
        }));
    }
    for racer in 0..RACERS {
        let (store, tenant) = (store.clone(), tenant.clone());
        tasks.push(tokio::spawn(async move {
            let race = Query::item(QueryItem::tags([RACE_TAG]));
            for seq in 0u64.. {
                let last = ReadOptions { backwards: true, limit: Some(1), ..Default::default() };
                let read = store.read(&tenant, race.clone(), last).await.unwrap_or_else(|e| fail("read", e));
                let (seen, _) = read.collect().await.unwrap_or_else(|e| fail("read", e));
                let after = seen.first().map(|e| e.position);
                let event = Event::new("Race").tag(RACE_TAG).tag(race_tag(cycle, racer, seq)).data(race_data(after.map_or(0, Position::dense)));
                match store.append(&tenant, vec![event], vec![AppendCondition::new(race.clone(), after)]).await {
                    Ok(positions) => println!("RACE {cycle} {racer} {seq} {}", positions[0]),
                    Err(StoreError::ConditionFailed { .. }) => {
                        println!("REFUSED {cycle} {racer} {seq}");
                        // A refusal costs no flush: without a pause the racers would starve the writers.
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                    Err(e) => fail("race append", e),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap_or_else(|e| fail("task", e));
    }
}
