//! The child process of the chain tests: `chain-writer DIR [FILE_SIZE_CAP]`. Tasks extend one
//! chain on the embedded store in DIR, each link decided on the link before it as a command
//! decides: read with `read_accepted` (so the link before may be accepted and not yet durable),
//! append guarded by that read. Prints `READY`, then `ACK n position` for every link the store
//! made durable and `LOST n` for every link it accepted and then could not make durable.
//!
//! With FILE_SIZE_CAP, every file this process writes is capped (RLIMIT_FSIZE, SIGXFSZ
//! ignored): a write past it fails as on a full disk; once every task has met the store's
//! refusal it prints `DONE` and exits. Without it, it runs until killed.

use counterpoint::store::{AppendCondition, EmbeddedStore, Event, EventStore, Query, QueryItem, ReadOptions, StoreError, Tenant};
use counterpoint_tests::chain::{link_data, parse_link, CHAINERS, CHAIN_TAG};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: chain-writer DIR [FILE_SIZE_CAP]");
    if let Some(cap) = args.next() {
        let cap: u64 = cap.parse().expect("FILE_SIZE_CAP in bytes");
        // SAFETY: plain libc calls at start-up, before any file is written.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit { rlim_cur: cap, rlim_max: libc::RLIM_INFINITY };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0, "setrlimit");
        }
    }
    let store = EmbeddedStore::open(&dir).expect("open store");
    let tenant = Tenant::new("chain").unwrap();
    println!("READY");
    let tasks: Vec<_> = (0..CHAINERS)
        .map(|_| {
            let (store, tenant) = (store.clone(), tenant.clone());
            tokio::spawn(async move {
                let query = Query::item(QueryItem::tags([CHAIN_TAG]));
                loop {
                    let read = store.read_accepted(&tenant, query.clone(), ReadOptions::default().backwards().limit(1));
                    let (last, at) = match read.await {
                        Ok(stream) => match stream.collect().await {
                            Ok(done) => done,
                            Err(_) => return,
                        },
                        Err(_) => return,
                    };
                    let n = last.first().map_or(0, |e| parse_link(&e.event.data).expect("a link")) + 1;
                    let event = Event::new("Link").tag(CHAIN_TAG).data(link_data(n));
                    let condition = AppendCondition::new(query.clone(), Some(at));
                    match store.append_accepted(&tenant, vec![event], &[condition]).await {
                        Ok(accepted) => match accepted.durable().await {
                            Ok(positions) => println!("ACK {n} {}", positions[0]),
                            Err(_) => println!("LOST {n}"),
                        },
                        Err(StoreError::ConditionFailed { .. }) => {}
                        Err(_) => return, // refused: the store is poisoned
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    println!("DONE");
}
