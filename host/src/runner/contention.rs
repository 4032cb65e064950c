//! Hot boundaries: commands whose append condition failed run again one after another, in
//! the order they arrived, instead of invalidating each other again.
//!
//! A boundary is named by the items of the queries a command read (per store and tenant).
//! A command that lost a race takes its turn on the items of the read whose condition failed
//! (in one global order, so two commands never wait on each other), re-runs, and keeps the
//! turn until it has decided. While anyone waits for or holds a turn on an item, the item is
//! *hot*: a first attempt that reads it waits for its turn there, and one that read it does not
//! append on its own but queues too, so the queued ones are not overtaken forever. A turn is
//! taken only on hot items and where a race was lost ([`Contention::hot_among`]): the rest of
//! what a command read (a course's capacity, a student's courses) stays cold, so that a hot
//! course's commands queue at their read of its seats, and decide from there, in turn.
//! Commands whose reads share no item with a queue never look at one: first attempts stay
//! optimistic, and disjoint boundaries never serialize.
//!
//! A hot boundary does not crowd out the others either. The runtime runs a task woken by the
//! one it just ran before every other ready task, so a queue handing its turn on from one
//! command to the next would jump ahead of all of them, and one hot boundary would take as
//! much CPU as every other boundary together. While commands run on boundaries nobody queues on
//! (one appended there within the last [`ELSEWHERE_WINDOW`]), a command handed its turn
//! therefore gives way first ([`Contention::turn`]), twice, with `tokio::task::yield_now`: tokio
//! defers it until its worker has no other work, or at the latest until the worker's periodic
//! maintenance (every 61 polls). Beside busy boundaries a hot one then decides about one
//! command per 122 polls of its worker. (Merely queueing it behind the ready tasks, by waking
//! itself, was measured too: it left the others 0.61 – 0.64 of their speed, against 0.81 –
//! 0.93. Giving way once left them 0.79 – 0.95 once commands had become cheaper, below 0.8 in
//! 2 runs of 21; twice, 0.84 – 1.03 in 13.) Alone, a hot boundary goes on at once: giving way
//! to its own commands' other work only put a wait between every two of its decisions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use tokio::sync::{Mutex as TurnLock, OwnedMutexGuard};

use crate::last_noted::LastNoted;
use crate::store::{AppendCondition, Query, QueryItem, SharedStore, Tenant};

/// One query item of one tenant's log in one store.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Boundary {
    store: usize,
    tenant: Tenant,
    item: String,
}

/// The boundaries a command's reads name, sorted and without duplicates. A query with no
/// items (every event) names none: it overlaps everything, and queueing on it would
/// serialize the whole tenant.
pub(super) fn boundaries(store: &SharedStore, tenant: &Tenant, reads: &[AppendCondition]) -> Vec<Boundary> {
    let mut names = Vec::new();
    add_names(&mut names, store, tenant, reads.iter().flat_map(|read| &read.query.items));
    names
}

/// The boundaries of a run's reads, named as it reads (by its gate) and when it ends: each read
/// is named once, not again at every read after it.
#[derive(Default)]
pub(super) struct Named {
    /// Sorted, without duplicates.
    boundaries: Vec<Boundary>,
    /// How many of the run's reads are named: those before the last query named, and that one
    /// (which, read, is the next of the run's reads).
    reads: usize,
}

impl Named {
    /// Names the reads not named yet and `next`, the query about to be read; returns every
    /// boundary named so far.
    pub fn add(&mut self, store: &SharedStore, tenant: &Tenant, reads: &[AppendCondition], next: &Query) -> &[Boundary] {
        self.complete(store, tenant, reads);
        add_names(&mut self.boundaries, store, tenant, next.items.iter());
        self.reads = reads.len() + 1;
        &self.boundaries
    }

    /// Names the reads not named yet: the boundaries of all of `reads`. (A query named by
    /// [`add`](Self::add) whose read failed stays named too.)
    pub fn complete(&mut self, store: &SharedStore, tenant: &Tenant, reads: &[AppendCondition]) -> &[Boundary] {
        let new = reads.get(self.reads..).unwrap_or_default();
        add_names(&mut self.boundaries, store, tenant, new.iter().flat_map(|read| &read.query.items));
        self.reads = self.reads.max(reads.len());
        &self.boundaries
    }
}

/// Adds the boundaries of `items` to `names`, keeping it sorted and without duplicates.
fn add_names<'i>(names: &mut Vec<Boundary>, store: &SharedStore, tenant: &Tenant, items: impl Iterator<Item = &'i QueryItem>) {
    let store = store_id(store);
    names.extend(items.map(|item| Boundary { store, tenant: tenant.clone(), item: canonical(item) }));
    names.sort_unstable();
    names.dedup();
}

/// Which store a boundary is in: the store's address, the same for every clone of it.
fn store_id(store: &SharedStore) -> usize {
    Arc::as_ptr(store) as *const () as usize
}

/// Between the names of an item's types, and between its tags.
const NEXT: &str = "\u{1}";
/// Between an item's types and its tags.
const TAGS: char = '\u{0}';

/// An item's name: its types and tags sorted, so that two commands reading the same item in
/// another order name one boundary.
fn canonical(item: &QueryItem) -> String {
    // One allocation: every read of a first attempt names its items while anything queues.
    let len = |parts: &[String]| parts.iter().map(|part| part.len() + NEXT.len()).sum::<usize>();
    let mut name = String::with_capacity(len(&item.types) + len(&item.tags) + 1);
    push_sorted(&mut name, &item.types);
    name.push(TAGS);
    push_sorted(&mut name, &item.tags);
    name
}

/// Appends `parts` in sorted order, separated by [`NEXT`] (sorted on the stack: items name a
/// few types and tags).
fn push_sorted(name: &mut String, parts: &[String]) {
    let mut sorted: SmallVec<[&String; 4]> = parts.iter().collect();
    sorted.sort_unstable();
    for (i, part) in sorted.into_iter().enumerate() {
        if i > 0 {
            name.push_str(NEXT);
        }
        name.push_str(part);
    }
}

/// The boundary's query item back from its name: its types and its tags.
fn parts(name: &str) -> (Vec<String>, Vec<String>) {
    let (types, tags) = name.split_once(TAGS).unwrap_or((name, ""));
    let split = |list: &str| list.split(NEXT).filter(|part| !part.is_empty()).map(str::to_owned).collect();
    (split(types), split(tags))
}

/// A hot boundary as an operator sees it: a query item that commands queue on now.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HotBoundary {
    /// The item's event types (sorted; none: any type).
    pub types: Vec<String>,
    /// The item's tags (sorted), all of which an event carries to match.
    pub tags: Vec<String>,
    /// Commands holding or waiting for a turn on it.
    pub queued: usize,
    /// Whether a command is running in its turn on it.
    pub running: bool,
}

/// The queues of one runner.
#[derive(Default)]
pub(super) struct Contention {
    /// A queue per hot boundary; an entry exists while someone waits for or holds it.
    queues: Mutex<HashMap<Boundary, Queue, foldhash::fast::RandomState>>,
    /// When a command last appended where nobody queued while others queued.
    elsewhere: LastNoted,
}

/// How long after an append where nobody queues a turn handed on still gives way.
const ELSEWHERE_WINDOW: Duration = Duration::from_millis(1);


#[derive(Default)]
struct Queue {
    lock: Arc<TurnLock<()>>,
    /// Held by a whole turn, whose command runs now (not by one still waiting for the rest
    /// of its boundaries).
    running: bool,
    /// The turns that hold it or wait for it (a turn waits for all of its boundaries from
    /// the start); the queue goes when none is left.
    turns: usize,
}

impl Contention {
    /// Whether nobody waits for or holds any turn: the common case, asked before naming any
    /// boundary (which allocates).
    pub fn is_quiet(&self) -> bool {
        self.queues.lock().expect("queues lock").is_empty()
    }

    /// The boundaries of `tenant`'s log in `store` that commands queue on now, the longest
    /// queue first.
    pub fn hot_boundaries(&self, store: &SharedStore, tenant: &Tenant) -> Vec<HotBoundary> {
        let store = store_id(store);
        let listed: Vec<(String, usize, bool)> = {
            let queues = self.queues.lock().expect("queues lock");
            queues
                .iter()
                .filter(|(boundary, _)| boundary.store == store && boundary.tenant == *tenant)
                .map(|(boundary, queue)| (boundary.item.clone(), queue.turns, queue.running))
                .collect()
        };
        let mut hot: Vec<HotBoundary> = listed
            .into_iter()
            .map(|(item, queued, running)| {
                let (types, tags) = parts(&item);
                HotBoundary { types, tags, queued, running }
            })
            .collect();
        hot.sort_by(|a, b| b.queued.cmp(&a.queued).then_with(|| (&a.types, &a.tags).cmp(&(&b.types, &b.tags))));
        hot
    }

    /// Across every store and tenant: how many boundaries are hot now, and how many turns are
    /// held or waited for on them (a command waiting on several counts on each).
    pub fn totals(&self) -> (usize, usize) {
        let queues = self.queues.lock().expect("queues lock");
        (queues.len(), queues.values().map(|queue| queue.turns).sum())
    }

    /// Notes that a command appends on boundaries nobody queues on (while others queue): for
    /// [`ELSEWHERE_WINDOW`] from now, turns handed on give way to the ready work beside them.
    pub fn ran_elsewhere(&self) {
        self.elsewhere.note();
    }

    /// When a command last appended where nobody queued (microseconds, 0: never).
    #[cfg(test)]
    pub(super) fn elsewhere_noted(&self) -> u64 {
        self.elsewhere.at()
    }

    /// Whether a command appended where nobody queued within the last [`ELSEWHERE_WINDOW`].
    fn ran_elsewhere_lately(&self) -> bool {
        self.elsewhere.within(ELSEWHERE_WINDOW)
    }

    /// Whether anyone waits for or holds a turn on one of `boundaries`.
    pub fn is_hot(&self, boundaries: &[Boundary]) -> bool {
        let queues = self.queues.lock().expect("queues lock");
        !queues.is_empty() && boundaries.iter().any(|b| queues.contains_key(b))
    }

    /// Those of `boundaries` that anyone waits for or holds a turn on, plus `also` (sorted,
    /// without duplicates): what a command that read `boundaries` takes its turn on. Only
    /// where others queue, or where it lost a race itself: a turn on an item nobody contends
    /// for would make it hot, and every command reading it would queue there too.
    pub fn hot_among(&self, boundaries: &[Boundary], also: &[Boundary]) -> Vec<Boundary> {
        let queues = self.queues.lock().expect("queues lock");
        let mut hot: Vec<Boundary> = boundaries.iter().filter(|b| queues.contains_key(b)).chain(also).cloned().collect();
        hot.sort_unstable();
        hot.dedup();
        hot
    }

    /// Whether a command that runs in its whole turn holds one of `boundaries`. A command in
    /// its turn elsewhere may append on these when none does: whoever waits for them is not
    /// running in its turn. Most have not read yet and read the append when their turn comes;
    /// a first attempt waiting inside a read has read part of them, and runs once more.
    pub fn is_running<'b>(&self, boundaries: impl IntoIterator<Item = &'b Boundary>) -> bool {
        let queues = self.queues.lock().expect("queues lock");
        boundaries.into_iter().any(|b| queues.get(b).is_some_and(|q| q.running))
    }

    /// Whether a run that read `boundaries` may append now. One without a turn may not while
    /// anyone queues on what it read (it would overtake them). One in `turn` may not while a
    /// command runs in its turn on what it read beyond this one: those that only wait there
    /// are overtaken once, since a wait is for a turn, not a decision.
    pub fn may_append(&self, turn: Option<&Turn>, boundaries: &[Boundary]) -> bool {
        if boundaries.is_empty() {
            return true;
        }
        match turn {
            Some(turn) => {
                !self.is_running(boundaries.iter().filter(|b| !turn.covers(std::slice::from_ref(b))))
            }
            None => !self.is_hot(boundaries),
        }
    }

    /// Waits until `until` for a turn on every one of `boundaries` (sorted: every command takes
    /// its locks in one order), first come first served; `None` if it did not come by then. A
    /// turn that had to be waited for was handed on by the command before, which woke this one:
    /// while commands run elsewhere, it gives way to the ready work beside it before it goes on
    /// (see the module's doc).
    pub async fn turn(self: &Arc<Self>, mut boundaries: Vec<Boundary>, until: Instant) -> Option<Turn> {
        // Each counted once: a boundary twice would wait for itself.
        boundaries.dedup();
        let mut locks = Vec::with_capacity(boundaries.len());
        {
            let mut queues = self.queues.lock().expect("queues lock");
            for b in &boundaries {
                let lock = match queues.get_mut(b) {
                    Some(queue) => {
                        queue.turns += 1;
                        queue.lock.clone()
                    }
                    None => {
                        let queue = Queue { turns: 1, ..Queue::default() };
                        let lock = queue.lock.clone();
                        queues.insert(b.clone(), queue);
                        lock
                    }
                };
                locks.push(lock);
            }
        }
        // Taken from the back, in order.
        boundaries.reverse();
        let mut turn = Turn { contention: self.clone(), held: Vec::with_capacity(locks.len()), waiting: boundaries, beside_others: false };
        let mut waited = false;
        for lock in locks {
            let guard = match lock.clone().try_lock_owned() {
                Ok(guard) => guard,
                Err(_) => {
                    waited = true;
                    // Dropped, the turn lets go of what it holds and of what it waits for.
                    tokio::time::timeout_at(until.into(), lock.lock_owned()).await.ok()?
                }
            };
            let boundary = turn.waiting.pop().expect("a boundary for each lock");
            turn.held.push((boundary, guard));
        }
        {
            let mut queues = self.queues.lock().expect("queues lock");
            for (boundary, _) in &turn.held {
                if let Some(queue) = queues.get_mut(boundary) {
                    queue.running = true;
                }
            }
        }
        if waited && self.ran_elsewhere_lately() {
            turn.beside_others = true;
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
        }
        Some(turn)
    }
}

/// A command's turn on its boundaries: the next command waiting on one of them runs when
/// this is dropped.
pub(super) struct Turn {
    contention: Arc<Contention>,
    held: Vec<(Boundary, OwnedMutexGuard<()>)>,
    /// Boundaries whose lock was taken from the map but not yet acquired (a turn dropped
    /// while waiting, e.g. at the deadline, must still let go of them), the next one last.
    waiting: Vec<Boundary>,
    /// Handed on by the command before while commands ran elsewhere (it gave way to them).
    beside_others: bool,
}

impl Turn {
    /// Whether the turn was handed on while commands ran on other boundaries: then it also
    /// waits for a late flush before it goes on (see the runner's `behind_late_flushes`).
    pub fn beside_others(&self) -> bool {
        self.beside_others
    }

    /// Whether this turn covers every one of `boundaries`.
    pub fn covers(&self, boundaries: &[Boundary]) -> bool {
        boundaries.iter().all(|b| self.held.iter().any(|(h, _)| h == b))
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut queues = self.contention.queues.lock().expect("queues lock");
        for (boundary, _) in &self.held {
            if let Some(queue) = queues.get_mut(boundary) {
                queue.running = false;
            }
        }
        // Each lock released lets the next in line go.
        let held = self.held.drain(..).map(|(boundary, _guard)| boundary);
        for name in held.chain(self.waiting.drain(..)) {
            if let Some(queue) = queues.get_mut(&name) {
                queue.turns = queue.turns.saturating_sub(1);
                if queue.turns == 0 {
                    // Nobody holds or waits for it: the boundary has cooled down.
                    queues.remove(&name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, Query};

    /// A deadline that never comes in a test.
    fn far() -> Instant {
        Instant::now() + std::time::Duration::from_secs(3600)
    }

    fn reads(items: &[(&[&str], &[&str])]) -> Vec<AppendCondition> {
        items
            .iter()
            .map(|(types, tags)| {
                let item = QueryItem { types: types.iter().map(|t| t.to_string()).collect(), tags: tags.iter().map(|t| t.to_string()).collect() };
                AppendCondition::new(Query::item(item), None)
            })
            .collect()
    }

    #[test]
    fn one_item_in_any_order_is_one_boundary_and_every_event_is_none() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let tenant = Tenant::new("acme").unwrap();
        let a = boundaries(&store, &tenant, &reads(&[(&["B", "A"], &["y", "x"]), (&["A", "B"], &["x", "y"])]));
        assert_eq!(a.len(), 1);
        let three = boundaries(&store, &tenant, &reads(&[(&["C", "A", "B"], &["z", "x", "y"]), (&["B", "C", "A"], &["y", "z", "x"])]));
        assert_eq!(three.len(), 1, "three types and tags in any order: {three:?}");
        assert_eq!(parts(&three[0].item), (vec!["A".into(), "B".into(), "C".into()], vec!["x".into(), "y".into(), "z".into()]));
        let split = boundaries(&store, &tenant, &reads(&[(&["A", "B"], &[]), (&["A"], &["B"]), (&[], &["A", "B"]), (&["A"], &[])]));
        assert_eq!(split.len(), 4, "types and tags named apart: {split:?}");
        assert!(boundaries(&store, &tenant, &[AppendCondition::new(Query::all(), None)]).is_empty());
        let other: SharedStore = Arc::new(MemoryStore::new());
        assert_ne!(boundaries(&other, &tenant, &reads(&[(&["A", "B"], &["x", "y"])])), a, "another store's log");
    }

    /// A boundary's name is its types sorted, joined, then its tags sorted, joined: for any
    /// number of them, in any order, repeated or not.
    #[test]
    fn a_boundary_name_is_the_sorted_types_then_the_sorted_tags() {
        let lists: [&[&str]; 7] = [&[], &["b"], &["b", "a"], &["a", "b"], &["a", "a"], &["c", "a", "b"], &["d", "b", "a", "c", "a"]];
        for types in lists {
            for tags in lists {
                let item = QueryItem { types: types.iter().map(|t| t.to_string()).collect(), tags: tags.iter().map(|t| t.to_string()).collect() };
                let sorted = |list: &[&str]| {
                    let mut list = list.to_vec();
                    list.sort_unstable();
                    list.join(NEXT)
                };
                assert_eq!(canonical(&item), format!("{}{TAGS}{}", sorted(types), sorted(tags)), "{types:?} {tags:?}");
            }
        }
    }

    /// The gate names each read once: the names after any sequence of reads are those of all
    /// of them, including reads it was not asked about (made while nothing queued).
    #[test]
    fn reads_named_as_they_come_name_what_all_of_them_name() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let tenant = Tenant::new("acme").unwrap();
        let all = reads(&[(&["A"], &["x"]), (&[], &["y"]), (&["A"], &["x"]), (&["B"], &["z"]), (&[], &["w"])]);
        let mut named = Named::default();
        assert_eq!(named.add(&store, &tenant, &[], &all[0].query), boundaries(&store, &tenant, &all[..1]));
        // The second read went unasked; the third repeats the first.
        assert_eq!(named.add(&store, &tenant, &all[..2], &all[2].query), boundaries(&store, &tenant, &all[..3]));
        assert_eq!(named.add(&store, &tenant, &all[..4], &all[4].query), boundaries(&store, &tenant, &all));
        assert_eq!(named.add(&store, &tenant, &all, &Query::all()), boundaries(&store, &tenant, &all), "nothing new");
        // When the run ends: its last read was asked about, and one more read since was not.
        let more = reads(&[(&["A"], &["x"]), (&[], &["y"]), (&["C"], &[])]);
        let mut named = Named::default();
        named.add(&store, &tenant, &more[..1], &more[1].query);
        assert_eq!(named.complete(&store, &tenant, &more), boundaries(&store, &tenant, &more));
        assert_eq!(Named::default().complete(&store, &tenant, &more), boundaries(&store, &tenant, &more), "a run never asked");
    }

    #[tokio::test]
    async fn turns_go_in_order_and_a_boundary_cools_down_when_nobody_waits() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let tenant = Tenant::new("acme").unwrap();
        let course = boundaries(&store, &tenant, &reads(&[(&[], &["course:1"])]));
        let both = boundaries(&store, &tenant, &reads(&[(&[], &["course:1"]), (&[], &["student:7"])]));
        let contention = Arc::new(Contention::default());
        assert!(!contention.is_hot(&course));
        let first = contention.turn(course.clone(), far()).await.unwrap();
        assert!(contention.is_hot(&both), "one shared item makes a command's boundaries hot");
        let waiting = {
            let contention = contention.clone();
            tokio::spawn(async move { contention.turn(both, far()).await.unwrap() })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the second waits for the first");
        assert!(contention.is_running(&course), "the first runs in its whole turn");
        let student = boundaries(&store, &tenant, &reads(&[(&[], &["student:7"])]));
        assert!(contention.is_hot(&student) && !contention.is_running(&student), "the second queues on the student too, still waiting for the course");
        drop(first);
        let second = waiting.await.unwrap();
        assert!(second.covers(&course));
        assert!(contention.is_running(&student), "the second has its whole turn now");
        drop(second);
        assert!(!contention.is_hot(&course), "nobody waits: cooled down");
        assert!(contention.queues.lock().unwrap().is_empty());
    }

    /// A command takes its turn where others queue, and where it lost a race itself: not on
    /// what it read that nobody contends for.
    #[tokio::test]
    async fn a_turn_is_wanted_on_the_hot_boundaries_read_and_where_it_lost() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let tenant = Tenant::new("acme").unwrap();
        let name = |tag: &str| boundaries(&store, &tenant, &reads(&[(&[], &[tag])]));
        let read = boundaries(&store, &tenant, &reads(&[(&[], &["capacity:1"]), (&[], &["student:7"]), (&[], &["seats:1"])]));
        let contention = Arc::new(Contention::default());
        assert!(contention.hot_among(&read, &[]).is_empty(), "nobody queues");
        let held = contention.turn(name("seats:1"), far()).await.unwrap();
        assert_eq!(contention.hot_among(&read, &[]), name("seats:1"));
        let mut wanted = name("student:7");
        wanted.extend(name("seats:1"));
        wanted.sort();
        assert_eq!(contention.hot_among(&read, &name("student:7")), wanted, "and where it lost, sorted");
        assert_eq!(contention.hot_among(&read, &name("seats:1")), name("seats:1"), "once each");
        drop(held);
    }

    /// A turn that does not come by its deadline is given up whole: what it took meanwhile is
    /// let go, and nothing stays queued for it.
    #[tokio::test]
    async fn a_turn_not_given_by_its_deadline_leaves_nothing_behind() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let tenant = Tenant::new("acme").unwrap();
        let course = boundaries(&store, &tenant, &reads(&[(&[], &["course:1"])]));
        let student = boundaries(&store, &tenant, &reads(&[(&[], &["student:7"])]));
        let both = boundaries(&store, &tenant, &reads(&[(&[], &["course:1"]), (&[], &["student:7"])]));
        let contention = Arc::new(Contention::default());
        let first = contention.turn(student.clone(), far()).await.unwrap();
        // Takes the course at once, then waits for the student in vain.
        let late = contention.turn(both, Instant::now() + std::time::Duration::from_millis(20)).await;
        assert!(late.is_none());
        assert!(!contention.is_hot(&course), "the course it took is let go");
        assert!(contention.is_running(&student), "the first keeps its turn");
        drop(first);
        assert!(contention.queues.lock().unwrap().is_empty(), "nobody waits: cooled down");
    }

    /// What an operator is shown: the boundaries of one tenant that commands queue on, the
    /// longest queue first, with their types and tags (sorted; none: any type), how many hold
    /// or wait for a turn there, and whether one runs in its turn; nothing once they drain.
    #[tokio::test]
    async fn hot_boundaries_are_listed_per_tenant_with_their_queues_while_they_last() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let (acme, other) = (Tenant::new("acme").unwrap(), Tenant::new("other").unwrap());
        let seats = reads(&[(&["Unsubscribed", "Subscribed"], &["course:1"])]);
        let seats_and_student = [seats.clone(), reads(&[(&[], &["student:7"])])].concat();
        let contention = Arc::new(Contention::default());
        assert!(contention.hot_boundaries(&store, &acme).is_empty());

        let held = contention.turn(boundaries(&store, &acme, &seats), far()).await.unwrap();
        let other_turn = contention.turn(boundaries(&store, &other, &seats), far()).await.unwrap();
        let wait_for = |reads: Vec<AppendCondition>| {
            let (contention, boundaries) = (contention.clone(), boundaries(&store, &acme, &reads));
            tokio::spawn(async move { drop(contention.turn(boundaries, far()).await.unwrap()) })
        };
        // Takes the student at once (its name sorts first), then waits for the seats.
        let both = wait_for(seats_and_student);
        let seats_only = wait_for(seats);
        tokio::time::timeout(Duration::from_secs(10), async {
            while contention.hot_boundaries(&store, &acme).first().is_none_or(|hot| hot.queued < 3) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("both waiters queue");
        let course = HotBoundary { types: vec!["Subscribed".into(), "Unsubscribed".into()], tags: vec!["course:1".into()], queued: 3, running: true };
        let student = HotBoundary { types: vec![], tags: vec!["student:7".into()], queued: 1, running: false };
        assert_eq!(contention.hot_boundaries(&store, &acme), [course, student], "the other tenant's not listed");
        assert_eq!(contention.totals(), (3, 5));
        let another_store: SharedStore = Arc::new(MemoryStore::new());
        assert!(contention.hot_boundaries(&another_store, &acme).is_empty(), "a store of its own: another log");

        drop(held);
        both.await.unwrap();
        seats_only.await.unwrap();
        assert!(contention.hot_boundaries(&store, &acme).is_empty(), "drained: cooled down");
        drop(other_turn);
        assert_eq!(contention.totals(), (0, 0));
    }

    /// A boundary's name gives back the item it names, its types and tags sorted.
    #[test]
    fn a_boundary_is_listed_as_the_item_it_names() {
        let item = QueryItem { types: vec!["B".into(), "A".into()], tags: vec!["z:1".into(), "a:2".into()] };
        assert_eq!(parts(&canonical(&item)), (vec!["A".into(), "B".into()], vec!["a:2".into(), "z:1".into()]));
        let any_type = QueryItem { types: vec![], tags: vec!["t:1".into()] };
        assert_eq!(parts(&canonical(&any_type)), (vec![], vec!["t:1".into()]));
    }

    /// Hands a turn on while a task on another boundary is ready, on a runtime of one worker
    /// (where a task woken by the running one runs next unless it yields), and says which
    /// finished first. `elsewhere_since`: how long before the handoff a command appended where
    /// nobody queued, if one did; `elsewhere_yields`: how often the task elsewhere gives way
    /// itself before it finishes. This relies on how tokio schedules a wake and a yield, which
    /// its documentation does not promise: an upgrade that changes it fails the tests below.
    async fn first_after_handoff(elsewhere_since: Option<Duration>, elsewhere_yields: usize) -> Vec<&'static str> {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let tenant = Tenant::new("acme").unwrap();
        let course = boundaries(&store, &tenant, &reads(&[(&[], &["course:1"])]));
        let contention = Arc::new(Contention::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let run = tokio::spawn({
            let order = order.clone();
            async move {
                let first = contention.turn(course.clone(), far()).await.unwrap();
                let next = tokio::spawn({
                    let (contention, order) = (contention.clone(), order.clone());
                    async move {
                        let _turn = contention.turn(course, far()).await.unwrap();
                        order.lock().unwrap().push("hot");
                    }
                });
                let (go, ready) = tokio::sync::oneshot::channel::<()>();
                let elsewhere = tokio::spawn({
                    let order = order.clone();
                    async move {
                        ready.await.unwrap();
                        for _ in 0..elsewhere_yields {
                            tokio::task::yield_now().await;
                        }
                        order.lock().unwrap().push("elsewhere");
                    }
                });
                if let Some(since) = elsewhere_since {
                    contention.ran_elsewhere();
                    if !since.is_zero() {
                        tokio::time::sleep(since).await;
                    }
                }
                tokio::task::yield_now().await; // both wait now
                go.send(()).unwrap(); // ready elsewhere,
                drop(first); // then the turn is handed on
                next.await.unwrap();
                elsewhere.await.unwrap();
            }
        });
        run.await.unwrap();
        order.lock().unwrap().clone()
    }

    /// While commands run on other boundaries, a turn handed on gives way, twice: the task
    /// elsewhere that became ready before the handoff runs first, and goes on first after it
    /// gives way once itself (else the hot queue would jump ahead of all other work, every
    /// time, and beside busy boundaries it took more than a fifth of their speed).
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_turn_handed_on_lets_ready_work_elsewhere_run_first_while_commands_run_there() {
        assert_eq!(first_after_handoff(Some(Duration::ZERO), 0).await, ["elsewhere", "hot"]);
        assert_eq!(first_after_handoff(Some(Duration::ZERO), 1).await, ["elsewhere", "hot"]);
        assert_eq!(first_after_handoff(Some(Duration::ZERO), 3).await, ["hot", "elsewhere"], "not for ever");
    }

    /// Alone, a hot boundary goes on at once: the next in line runs right after the handoff,
    /// when no command appended elsewhere, or none within the window.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_turn_handed_on_goes_on_at_once_when_nothing_ran_elsewhere_lately() {
        assert_eq!(first_after_handoff(None, 0).await, ["hot", "elsewhere"]);
        assert_eq!(first_after_handoff(Some(ELSEWHERE_WINDOW * 3), 0).await, ["hot", "elsewhere"]);
    }

    /// The course's subscriptions: each reads the course, then its seats. One in its turn on
    /// the course appends though others queue on the seats, as long as none runs there; were
    /// it held back by mere queueing, every run would queue on the seats again and each
    /// subscription would run twice.
    #[tokio::test]
    async fn a_turn_holder_appends_past_those_who_only_wait_beyond_its_turn() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let tenant = Tenant::new("acme").unwrap();
        let course = boundaries(&store, &tenant, &reads(&[(&[], &["course:1"])]));
        let seats = boundaries(&store, &tenant, &reads(&[(&["Subscribed"], &["course:1"])]));
        let read = boundaries(&store, &tenant, &reads(&[(&[], &["course:1"]), (&["Subscribed"], &["course:1"])]));
        let contention = Arc::new(Contention::default());
        assert!(contention.may_append(None, &read), "nobody queues: a first attempt appends");
        let first = contention.turn(course.clone(), far()).await.unwrap();
        let waiting = {
            let (contention, read) = (contention.clone(), read.clone());
            tokio::spawn(async move { contention.turn(read, far()).await.unwrap() })
        };
        tokio::task::yield_now().await;
        assert!(contention.is_hot(&seats) && !contention.is_running(&seats), "the second queues on the seats, waiting for the course");
        assert!(contention.may_append(Some(&first), &read), "the first, in its turn, appends past the second's wait on the seats");
        assert!(!contention.may_append(None, &seats), "a run without a turn would overtake the queue");
        drop(first);
        let second = waiting.await.unwrap();
        let elsewhere = contention.turn(boundaries(&store, &tenant, &reads(&[(&[], &["course:2"])])), far()).await.unwrap();
        assert!(!contention.may_append(Some(&elsewhere), &read), "the second runs in its turn on what this one read beyond its own");
        assert!(contention.may_append(Some(&second), &read), "a turn covering all it read");
    }
}
