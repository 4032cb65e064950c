//! Builders for DCB queries and read options, as inherent methods on the WIT types so
//! nothing is converted on the way to the host.

use crate::Event;
pub use crate::bindings::counterpoint::slice::types::{
    Position, Query, QueryItem as Item, ReadOptions, ReadResult,
};

/// A position as one 128-bit number (the contract carries it as `(high, low)` halves).
pub fn position_number(position: Position) -> u128 {
    (u128::from(position.0) << 64) | u128::from(position.1)
}

/// The position of a 128-bit number.
pub fn position_of(number: u128) -> Position {
    ((number >> 64) as u64, number as u64)
}

impl Item {
    /// Matches every event; narrow it with [`Item::tag`].
    pub fn any() -> Self {
        Item {
            types: Vec::new(),
            tags: Vec::new(),
        }
    }

    /// Matches events of one of `types`.
    pub fn types<S: Into<String>>(types: impl IntoIterator<Item = S>) -> Self {
        Item {
            types: types.into_iter().map(Into::into).collect(),
            tags: Vec::new(),
        }
    }

    /// Matches events of type `E`.
    pub fn of<E: Event>() -> Self {
        Self::types([E::TYPE])
    }

    /// Also matches events of type `E` (types are OR'ed).
    pub fn or_of<E: Event>(mut self) -> Self {
        self.types.push(E::TYPE.into());
        self
    }

    /// Requires the tag (tags are AND'ed).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Requires every one of `tags`.
    pub fn tags<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> Self {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }
}

impl Default for Query {
    fn default() -> Self {
        Self::all()
    }
}

impl From<Item> for Query {
    fn from(item: Item) -> Self {
        Query { items: vec![item] }
    }
}

impl Query {
    /// A query without items; it matches every event until an item is added.
    pub fn new() -> Self {
        Query { items: Vec::new() }
    }

    /// Matches every event.
    pub fn all() -> Self {
        Self::new()
    }

    /// Matches events of type `E`.
    pub fn of<E: Event>() -> Self {
        Item::of::<E>().into()
    }

    /// Matches events of one of `types`.
    pub fn types<S: Into<String>>(types: impl IntoIterator<Item = S>) -> Self {
        Item::types(types).into()
    }

    /// Matches events of any type carrying the tag.
    pub fn tagged(tag: impl Into<String>) -> Self {
        Item::any().tag(tag).into()
    }

    /// Adds an item (items are OR'ed).
    pub fn item(mut self, item: Item) -> Self {
        self.items.push(item);
        self
    }

    /// Also matches what `other` matches.
    pub fn or(mut self, other: impl Into<Query>) -> Self {
        self.items.extend(other.into().items);
        self
    }

    /// Also matches events of type `E`, in every item.
    pub fn or_of<E: Event>(mut self) -> Self {
        self.each_item(|item| item.types.push(E::TYPE.into()));
        self
    }

    /// Requires the tag in every item: `Query::of::<A>().tag(t)` is "A events tagged t".
    /// On a query without items this matches every event with the tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        let tag = tag.into();
        self.each_item(|item| item.tags.push(tag.clone()));
        self
    }

    // Treats a query without items as the one item that matches everything, so that
    // narrowing it keeps its meaning ("every event" narrowed, not "nothing").
    fn each_item(&mut self, f: impl FnMut(&mut Item)) {
        if self.items.is_empty() {
            self.items.push(Item::any());
        }
        self.items.iter_mut().for_each(f);
    }

    /// Whether `event` matches: the DCB rule the host applies, for native tests.
    pub fn matches(&self, event_type: &str, tags: &[String]) -> bool {
        self.items.is_empty()
            || self.items.iter().any(|item| {
                (item.types.is_empty() || item.types.iter().any(|t| t == event_type))
                    && item.tags.iter().all(|t| tags.contains(t))
            })
    }
}

#[allow(clippy::derivable_impls)] // The type is generated: nothing to derive on.
impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            after: None,
            limit: None,
            backwards: false,
        }
    }
}

impl ReadOptions {
    /// Everything, oldest first.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last `n` matching events, newest first.
    pub fn last(n: u64) -> Self {
        Self::new().backwards().limit(n)
    }

    /// Only events after `position` (exclusive).
    pub fn after(mut self, position: Position) -> Self {
        self.after = Some(position);
        self
    }

    /// At most `n` events.
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// Newest first; applied before `limit`.
    pub fn backwards(mut self) -> Self {
        self.backwards = true;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct A {}
    impl Event for A {
        const TYPE: &'static str = "A";
        fn tags(&self) -> Vec<String> {
            Vec::new()
        }
    }
    #[derive(Serialize, Deserialize)]
    struct B {}
    impl Event for B {
        const TYPE: &'static str = "B";
        fn tags(&self) -> Vec<String> {
            Vec::new()
        }
    }

    fn item(types: &[&str], tags: &[&str]) -> Item {
        Item::types(types.iter().copied()).tags(tags.iter().copied())
    }

    #[test]
    fn builds_items_and_ors_them() {
        let q = Query::of::<A>()
            .tag("x:1")
            .or(Item::of::<B>().or_of::<A>().tag("y:2").tag("z:3"));
        assert_eq!(
            q.items,
            vec![item(&["A"], &["x:1"]), item(&["B", "A"], &["y:2", "z:3"])]
        );
        assert_eq!(Query::new().item(Item::any()).items, vec![item(&[], &[])]);
        assert_eq!(Query::types(["A", "B"]).items, vec![item(&["A", "B"], &[])]);
    }

    #[test]
    fn tag_narrows_every_item_and_the_empty_query() {
        assert_eq!(Query::all().tag("t:1").items, vec![item(&[], &["t:1"])]);
        assert_eq!(Query::tagged("t:1"), Query::all().tag("t:1"));
        let q = Query::of::<A>()
            .or(Query::of::<B>())
            .tag("t:1")
            .or_of::<A>();
        assert_eq!(
            q.items,
            vec![item(&["A", "A"], &["t:1"]), item(&["B", "A"], &["t:1"])]
        );
        assert_eq!(Query::default(), Query::new());
    }

    #[test]
    fn matches_follows_the_dcb_rule() {
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(Query::all().matches("X", &[]));
        let q = Query::of::<A>().tag("k:1").or(Query::tagged("k:2"));
        assert!(q.matches("A", &tags(&["k:1", "other"])));
        assert!(!q.matches("A", &tags(&["other"])));
        assert!(!q.matches("B", &tags(&["k:1"])));
        assert!(q.matches("B", &tags(&["k:2"])));
    }

    #[test]
    fn read_options() {
        assert_eq!(
            ReadOptions::new(),
            ReadOptions {
                after: None,
                limit: None,
                backwards: false
            }
        );
        assert_eq!(
            ReadOptions::last(3),
            ReadOptions {
                after: None,
                limit: Some(3),
                backwards: true
            }
        );
        assert_eq!(ReadOptions::new().after((0, 7)).limit(2).after, Some((0, 7)));
    }
}
