//! The child process of the crash test: appends under concurrent load to the embedded store in
//! the directory given as the first argument, and prints `ACK cycle writer seq first count` for
//! every append the store acknowledged, until it is killed.

use counterpoint::store::{AppendCondition, EmbeddedStore, Event, EventStore, Query, QueryItem, Tenant};
use counterpoint_tests::crash::{append_tag, event_data, WRITERS};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: crash-writer DIR CYCLE");
    let cycle: u64 = args.next().expect("usage: crash-writer DIR CYCLE").parse().expect("cycle number");
    let store = EmbeddedStore::open(&dir).expect("open store");
    let tenant = Tenant::new("crash").unwrap();
    println!("READY");
    let tasks: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (store, tenant) = (store.clone(), tenant.clone());
            tokio::spawn(async move {
                for seq in 0u64.. {
                    let count = 1 + (seq % 3) as usize;
                    let tag = append_tag(cycle, writer, seq);
                    let events: Vec<Event> = (0..count)
                        .map(|j| Event::new("Crash").tag(tag.clone()).data(event_data(&tag, j, count, seq)))
                        .collect();
                    // A condition probe in every append, as commands make them.
                    let condition = AppendCondition::new(Query::item(QueryItem::tags([tag.clone()])), None);
                    let positions = store.append(&tenant, events, vec![condition]).await.expect("append");
                    println!("ACK {cycle} {writer} {seq} {} {count}", positions[0]);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}
