//! What the host hands to the slices that follow the log — automations and read models: every
//! event their query matches except the host's own records (`counterpoint.*`: checkpoints, dead
//! letters, idempotency records).
//!
//! A query matches host records only by being wide (an empty one matches every event), never
//! because a slice asked for them. Handed its own checkpoints, an automation with such a query
//! would checkpoint past each of them, see that checkpoint, and so on for ever. Both consumers
//! take their events from here, so the rule is kept in one place. Skipped records still count as
//! reached: a follower's checkpoint moves past them.

use crate::store::{Position, SequencedEvent, StoreError, Subscription};

/// Events for a slice, and how far in the log the read that found them got.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The events for the slice, in position order; none if every event read was a host record.
    pub events: Vec<SequencedEvent>,
    /// The position of the last event read, host record or not.
    pub reached: Position,
}

impl Delivery {
    /// Of events read in position order: what the slice gets of them. `None` for no events.
    pub fn of(read: Vec<SequencedEvent>) -> Option<Delivery> {
        let reached = read.last()?.position;
        let events = read.into_iter().filter(|e| !e.event.is_host_record()).collect();
        Some(Delivery { events, reached })
    }
}

/// A subscription, delivered as [`Delivery`] batches.
pub struct Feed {
    subscription: Subscription,
}

impl Feed {
    pub fn new(subscription: Subscription) -> Self {
        Feed { subscription }
    }

    /// Waits for the next event, then takes those already read behind it, up to `max` events read
    /// (host records included, so a long run of them is taken in bounded steps too).
    pub async fn next(&mut self, max: usize) -> Result<Delivery, StoreError> {
        let mut read = vec![self.subscription.next().await?];
        while read.len() < max && self.subscription.buffered() > 0 {
            read.push(self.subscription.next().await?);
        }
        Ok(Delivery::of(read).expect("one event at least"))
    }

    /// Events read and not yet delivered: 0 when the follower has caught up with the log.
    pub fn buffered(&self) -> usize {
        self.subscription.buffered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Event;

    fn at(position: u128, event_type: &str) -> SequencedEvent {
        SequencedEvent { position: Position::from_u128(position), event: Event::new(event_type) }
    }

    #[test]
    fn host_records_are_left_out_but_count_as_reached() {
        let read = vec![at(1, "OrderPlaced"), at(2, "counterpoint.idempotency"), at(3, "Noted"), at(4, "counterpoint.checkpoint")];
        let delivery = Delivery::of(read).unwrap();
        let types: Vec<&str> = delivery.events.iter().map(|e| e.event.event_type.as_str()).collect();
        assert_eq!(types, ["OrderPlaced", "Noted"]);
        assert_eq!(delivery.reached, Position::from_u128(4));
        let only_host = Delivery::of(vec![at(5, "counterpoint.checkpoint")]).unwrap();
        assert!(only_host.events.is_empty());
        assert_eq!(only_host.reached, Position::from_u128(5));
        assert!(Delivery::of(Vec::new()).is_none());
    }
}
