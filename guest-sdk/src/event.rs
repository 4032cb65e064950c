//! Typed events over the WIT's raw ones: MessagePack with named fields, so the host can
//! show them as JSON and slices in other languages can read them.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
/// An event as the store holds it: type, tags, MessagePack payload, metadata.
pub use crate::bindings::counterpoint::slice::types::Event as RawEvent;
/// A stored event with its position, as reads and projections deliver it.
pub use crate::bindings::counterpoint::slice::types::SequencedEvent as Envelope;
use crate::query::{Position, ReadResult};

/// A domain event. `TYPE` is its name in the log; `tags` are what queries select it by.
///
/// A slice may also declare its own `Event` structs for another slice's events (with just
/// the fields it needs: unknown fields are ignored), since slices never share code.
pub trait Event: Serialize + DeserializeOwned {
    /// The event's type in the log, e.g. `OrderPlaced`.
    const TYPE: &'static str;

    /// The tags to store with the event, e.g. `vec![tag("order_id", &self.order_id)]`.
    /// The SDK sorts and deduplicates them.
    fn tags(&self) -> Vec<String>;
}

/// A tag `key:value`, the convention for tags that identify an entity.
pub fn tag(key: &str, value: impl std::fmt::Display) -> String {
    format!("{key}:{value}")
}

impl RawEvent {
    /// Encodes a typed event with its tags.
    pub fn encode<E: Event>(event: &E) -> Result<Self, Error> {
        let data = rmp_serde::to_vec_named(event)
            .map_err(|e| Error::store(format!("cannot encode {}: {e}", E::TYPE)))?;
        Ok(RawEvent {
            event_type: E::TYPE.into(),
            tags: tags_of_event(event),
            data,
            metadata: Vec::new(),
        })
    }
}

/// Tags are a set: sorted and deduplicated, so the same event always carries the same list.
fn tags_of_event<E: Event>(event: &E) -> Vec<String> {
    let mut tags = event.tags();
    tags.sort_unstable();
    tags.dedup();
    tags
}

impl Envelope {
    /// The event's type.
    pub fn event_type(&self) -> &str {
        &self.event.event_type
    }

    /// The event's tags.
    pub fn tags(&self) -> &[String] {
        &self.event.tags
    }

    /// A metadata value, if present.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.event
            .metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether this is an `E`.
    pub fn is<E: Event>(&self) -> bool {
        self.event.event_type == E::TYPE
    }

    /// Decodes the payload as an `E`; fails if it is another type or does not decode.
    pub fn decode<E: Event>(&self) -> Result<E, Error> {
        if !self.is::<E>() {
            return Err(Error::store(format!(
                "event at position {} has type {}, expected {}",
                crate::query::position_number(self.position),
                self.event.event_type,
                E::TYPE
            )));
        }
        // A stored event that does not decode is bad data in the log, not bad input.
        rmp_serde::from_slice(&self.event.data).map_err(|e| {
            Error::store(format!(
                "cannot decode {} at position {}: {e}",
                E::TYPE,
                crate::query::position_number(self.position)
            ))
        })
    }
}

/// The events a read selected, in the order read, and the read's consistency position.
#[derive(Debug, Clone, Default)]
pub struct Events {
    events: Vec<Envelope>,
    position: Position,
}

impl Events {
    pub(crate) fn new(result: ReadResult) -> Self {
        Events {
            events: result.events,
            position: result.position,
        }
    }

    /// The position up to which the read saw every matching event.
    pub fn position(&self) -> Position {
        self.position
    }

    /// Whether any event is an `E`.
    pub fn has<E: Event>(&self) -> bool {
        self.events.iter().any(Envelope::is::<E>)
    }

    /// Every `E`, decoded, in the order read.
    pub fn of_type<E: Event>(&self) -> Result<Vec<E>, Error> {
        self.events
            .iter()
            .filter(|e| e.is::<E>())
            .map(Envelope::decode)
            .collect()
    }

    /// The events themselves.
    pub fn into_vec(self) -> Vec<Envelope> {
        self.events
    }
}

impl std::ops::Deref for Events {
    type Target = [Envelope];
    fn deref(&self) -> &[Envelope] {
        &self.events
    }
}

impl IntoIterator for Events {
    type Item = Envelope;
    type IntoIter = std::vec::IntoIter<Envelope>;
    fn into_iter(self) -> Self::IntoIter {
        self.events.into_iter()
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = &'a Envelope;
    type IntoIter = std::slice::Iter<'a, Envelope>;
    fn into_iter(self) -> Self::IntoIter {
        self.events.iter()
    }
}

/// The WIT `tags` export for one event type: decode the payload, ask the event.
pub fn tags_of<E: Event>(data: &[u8]) -> Result<Vec<String>, Error> {
    let event: E = rmp_serde::from_slice(data)
        .map_err(|e| Error::invalid_input(format!("not a {}: {e}", E::TYPE)))?;
    Ok(tags_of_event(&event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct ItemAdded {
        order_id: String,
        qty: u32,
    }
    impl Event for ItemAdded {
        const TYPE: &'static str = "ItemAdded";
        fn tags(&self) -> Vec<String> {
            vec![tag("order_id", &self.order_id)]
        }
    }

    // Another slice's view of the same event: only the fields it needs.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct ItemAddedView {
        qty: u32,
    }
    impl Event for ItemAddedView {
        const TYPE: &'static str = "ItemAdded";
        fn tags(&self) -> Vec<String> {
            Vec::new()
        }
    }

    fn stored(raw: RawEvent, position: Position) -> Envelope {
        Envelope {
            position,
            event: raw,
        }
    }

    #[test]
    fn payloads_are_msgpack_maps_with_named_fields() {
        let raw = RawEvent::encode(&ItemAdded {
            order_id: "o-1".into(),
            qty: 2,
        })
        .unwrap();
        assert_eq!(raw.event_type, "ItemAdded");
        assert_eq!(raw.tags, vec!["order_id:o-1"]);
        // fixmap of 2, "order_id": "o-1", "qty": 2
        let mut expected = vec![0x82, 0xa8];
        expected.extend(b"order_id");
        expected.push(0xa3);
        expected.extend(b"o-1");
        expected.push(0xa3);
        expected.extend(b"qty");
        expected.push(0x02);
        assert_eq!(raw.data, expected);
    }

    #[test]
    fn decodes_by_type_and_ignores_unknown_fields() {
        let e = stored(
            RawEvent::encode(&ItemAdded {
                order_id: "o-1".into(),
                qty: 2,
            })
            .unwrap(),
            (0, 7),
        );
        assert!(e.is::<ItemAdded>());
        assert_eq!(
            e.decode::<ItemAddedView>().unwrap(),
            ItemAddedView { qty: 2 }
        );
        assert_eq!(
            tags_of::<ItemAdded>(&e.event.data).unwrap(),
            vec!["order_id:o-1"]
        );
        assert!(matches!(
            tags_of::<ItemAdded>(&[0xc0]),
            Err(Error::InvalidInput(_))
        ));
        let events = Events {
            events: vec![e.clone(), e],
            position: (0, 9),
        };
        assert!(events.has::<ItemAdded>());
        assert_eq!(events.of_type::<ItemAddedView>().unwrap().len(), 2);
        assert_eq!(events.position(), (0, 9));
    }

    #[test]
    fn decode_checks_the_type() {
        #[derive(Serialize, Deserialize)]
        struct Other {}
        impl Event for Other {
            const TYPE: &'static str = "Other";
            fn tags(&self) -> Vec<String> {
                Vec::new()
            }
        }
        let e = stored(RawEvent::encode(&Other {}).unwrap(), (0, 1));
        assert!(!e.is::<ItemAdded>());
        let err = e.decode::<ItemAdded>().unwrap_err();
        assert!(
            err.message().contains("has type Other, expected ItemAdded"),
            "{err:?}"
        );
    }
}
