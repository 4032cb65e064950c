use counterpoint_sdk::testing::TestStore;
use counterpoint_sdk::{Error, Slice};
use serde::Serialize;

use crate::*;

// The orders slice's events as it writes them (more fields than inventory reads).
#[derive(Serialize, Deserialize)]
struct OrdersPlaced {
    order_id: String,
    customer_id: String,
}
impl Event for OrdersPlaced {
    const TYPE: &'static str = "OrderPlaced";
    fn tags(&self) -> Vec<String> {
        vec![
            tag("order_id", &self.order_id),
            tag("customer_id", &self.customer_id),
        ]
    }
}
#[derive(Serialize, Deserialize)]
struct OrdersCancelled {
    order_id: String,
    reason: String,
}
impl Event for OrdersCancelled {
    const TYPE: &'static str = "OrderCancelled";
    fn tags(&self) -> Vec<String> {
        vec![tag("order_id", &self.order_id)]
    }
}

fn placed(order_id: &str) -> OrdersPlaced {
    OrdersPlaced {
        order_id: order_id.into(),
        customer_id: "c-1".into(),
    }
}

fn reserve(
    store: &mut TestStore,
    order_id: &str,
    sku: &str,
    qty: u32,
) -> Result<Reservation, Error> {
    store.run(ReserveStock {
        order_id: order_id.into(),
        sku: sku.into(),
        qty,
    })
}

fn level(store: &mut TestStore, sku: &str) -> StockLevel {
    store
        .project::<StockLevel>(&SkuRef { sku: sku.into() })
        .unwrap()
}

fn rejected<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result {
        Err(Error::Rejected(m)) => m,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn stock_is_received_and_reserved_for_placed_orders() {
    let mut store = TestStore::new();
    store
        .run(ReceiveStock {
            sku: "apple".into(),
            qty: 10,
        })
        .unwrap();
    store
        .run(ReceiveStock {
            sku: "pear".into(),
            qty: 1,
        })
        .unwrap();
    store.given(placed("o-1")).given(placed("o-2"));
    let r = reserve(&mut store, "o-1", "apple", 4).unwrap();
    assert_eq!(
        r,
        Reservation {
            order_id: "o-1".into(),
            sku: "apple".into(),
            qty: 4,
            available: 6
        }
    );
    reserve(&mut store, "o-2", "apple", 6).unwrap();
    let apple = level(&mut store, "apple");
    assert_eq!(
        (apple.received, apple.reserved, apple.available),
        (10, 10, 0)
    );
    assert_eq!(level(&mut store, "pear").available, 1);
    assert_eq!(level(&mut store, "kiwi").received, 0);
    let reserved = store.events().last().unwrap();
    assert_eq!(reserved.tags(), ["order_id:o-2", "sku:apple"]);
}

#[test]
fn reservations_are_rejected() {
    let mut store = TestStore::new();
    store
        .run(ReceiveStock {
            sku: "apple".into(),
            qty: 5,
        })
        .unwrap();
    assert_eq!(
        rejected(reserve(&mut store, "o-1", "apple", 1)),
        "order o-1 is not placed"
    );
    store.given(placed("o-1"));
    assert_eq!(
        rejected(reserve(&mut store, "o-1", "apple", 6)),
        "only 5 of apple available"
    );
    reserve(&mut store, "o-1", "apple", 2).unwrap();
    assert_eq!(
        rejected(reserve(&mut store, "o-1", "apple", 1)),
        "apple is already reserved for order o-1"
    );
    store.given(placed("o-2")).given(OrdersCancelled {
        order_id: "o-2".into(),
        reason: "x".into(),
    });
    assert_eq!(
        rejected(reserve(&mut store, "o-2", "apple", 1)),
        "order o-2 is cancelled"
    );
    assert!(matches!(
        reserve(&mut store, "o-3", "apple", 0),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        store.run(ReceiveStock {
            sku: "apple".into(),
            qty: 0
        }),
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(level(&mut store, "apple").available, 3);
}

#[test]
fn describes_itself() {
    let d = CounterpointSlice::describe();
    assert_eq!(d.name, "inventory");
    assert_eq!(d.emits, ["StockReceived", "StockReserved", "StockReservationFailed"]);
    assert_eq!(d.automations[0].name, "reserve-on-confirm");
    let params: Vec<&str> = d.projections[0]
        .params
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(params, ["sku"]);
    // The orders slice's events are read here, not emitted: their tags are not ours to compute.
    assert!(matches!(
        CounterpointSlice::tags("OrderPlaced", &[0x80]),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn the_stock_levels_read_model_agrees_with_the_projection() {
    let mut store = TestStore::new();
    store.run(ReceiveStock { sku: "apple".into(), qty: 10 }).unwrap();
    store.run(ReceiveStock { sku: "pear".into(), qty: 2 }).unwrap();
    store.given(placed("o-1"));
    // Queried before and after more events: each event is applied once.
    let all = store.read_model::<StockLevels>(&StockQuery { sku: None }).unwrap();
    assert_eq!(all.iter().map(|l| (l.sku.as_str(), l.available)).collect::<Vec<_>>(), [("apple", 10), ("pear", 2)]);
    reserve(&mut store, "o-1", "apple", 4).unwrap();
    store.run(ReceiveStock { sku: "apple".into(), qty: 1 }).unwrap();
    let apple = store.read_model::<StockLevels>(&StockQuery { sku: Some("apple".into()) }).unwrap();
    let projected = level(&mut store, "apple");
    assert_eq!(apple, [Level { sku: "apple".into(), received: projected.received, reserved: projected.reserved, available: projected.available }]);
    assert_eq!((apple[0].received, apple[0].reserved, apple[0].available), (11, 4, 7));
    assert!(store.read_model::<StockLevels>(&StockQuery { sku: Some("kiwi".into()) }).unwrap().is_empty());
    let d = CounterpointSlice::read_models();
    assert_eq!((d[0].name.as_str(), d[0].params[0].name.as_str()), ("stock-levels", "sku"));
}
