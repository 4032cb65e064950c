use counterpoint_sdk::testing::TestStore;
use counterpoint_sdk::{Error, Slice};
use serde::Serialize;

use crate::projections::CustomerOrdersView;
use crate::*;

fn place(store: &mut TestStore, order_id: &str, customer_id: &str) -> Result<Receipt, Error> {
    store.run(PlaceOrder {
        order_id: order_id.into(),
        customer_id: customer_id.into(),
    })
}

fn add(
    store: &mut TestStore,
    order_id: &str,
    sku: &str,
    qty: u32,
    price: u64,
) -> Result<Receipt, Error> {
    store.run(AddItem {
        order_id: order_id.into(),
        sku: sku.into(),
        qty,
        price,
    })
}

fn summary(store: &mut TestStore, order_id: &str) -> Result<Order, Error> {
    #[derive(Serialize)]
    struct Params<'a> {
        order_id: &'a str,
    }
    store.project::<Order>(&Params { order_id })
}

fn rejected(result: Result<Receipt, Error>) -> String {
    match result {
        Err(Error::Rejected(m)) => m,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn an_order_is_placed_filled_and_confirmed() {
    let mut store = TestStore::new();
    place(&mut store, "o-1", "c-1").unwrap();
    add(&mut store, "o-1", "apple", 3, 50).unwrap();
    let receipt = add(&mut store, "o-1", "pear", 1, 120).unwrap();
    assert_eq!(receipt.total, 270);
    let receipt = store
        .run(ConfirmOrder {
            order_id: "o-1".into(),
        })
        .unwrap();
    assert_eq!((receipt.status, receipt.total), (Status::Confirmed, 270));

    let order = summary(&mut store, "o-1").unwrap();
    assert_eq!(order.status, Status::Confirmed);
    assert_eq!(order.customer_id, "c-1");
    assert_eq!(
        order.items,
        vec![
            Line {
                sku: "apple".into(),
                qty: 3,
                price: 50
            },
            Line {
                sku: "pear".into(),
                qty: 1,
                price: 120
            },
        ]
    );
    assert_eq!(order.total, 270);

    let placed = &store.events()[0];
    assert_eq!(placed.event_type(), "OrderPlaced");
    assert_eq!(placed.tags(), ["customer_id:c-1", "order_id:o-1"], "sorted");
    assert_eq!(placed.metadata("command"), Some("place-order"));
    assert_eq!(store.events()[1].tags(), ["order_id:o-1", "sku:apple"]);
}

#[test]
fn business_rules_reject() {
    let mut store = TestStore::new();
    assert_eq!(
        rejected(add(&mut store, "o-1", "apple", 1, 1)),
        "order o-1 is not placed"
    );
    place(&mut store, "o-1", "c-1").unwrap();
    assert_eq!(
        rejected(place(&mut store, "o-1", "c-2")),
        "order o-1 is already placed"
    );
    assert_eq!(
        rejected(store.run(ConfirmOrder {
            order_id: "o-1".into()
        })),
        "order o-1 has no items"
    );
    add(&mut store, "o-1", "apple", 1, 1).unwrap();
    store
        .run(ConfirmOrder {
            order_id: "o-1".into(),
        })
        .unwrap();
    assert_eq!(
        rejected(store.run(ConfirmOrder {
            order_id: "o-1".into()
        })),
        "order o-1 is already confirmed"
    );
    assert_eq!(
        rejected(add(&mut store, "o-1", "apple", 1, 1)),
        "order o-1 is already confirmed"
    );
    let cancel = |id: &str| CancelOrder {
        order_id: id.into(),
        reason: "changed my mind".into(),
    };
    // A confirmed order can still be cancelled (when its stock cannot be reserved, say).
    assert_eq!(store.run(cancel("o-1")).unwrap().status, Status::Cancelled);

    place(&mut store, "o-2", "c-1").unwrap();
    store.run(cancel("o-2")).unwrap();
    assert_eq!(rejected(store.run(cancel("o-2"))), "order o-2 is cancelled");
    assert_eq!(
        rejected(add(&mut store, "o-2", "apple", 1, 1)),
        "order o-2 is cancelled"
    );
    assert_eq!(
        summary(&mut store, "o-2").unwrap().reason.as_deref(),
        Some("changed my mind")
    );
    // Nothing was appended by a rejected command.
    assert_eq!(store.events().len(), 6);
}

#[test]
fn invalid_input_and_unknown_names() {
    let mut store = TestStore::new();
    #[derive(Serialize)]
    struct BadQty<'a> {
        order_id: &'a str,
        sku: &'a str,
        qty: &'a str,
        price: u64,
    }
    let bad = BadQty {
        order_id: "o-1",
        sku: "apple",
        qty: "three",
        price: 1,
    };
    match store.execute::<CounterpointSlice>("add-item", &bad) {
        Err(Error::InvalidInput(m)) => assert_eq!(m, "field `qty`: expected integer, got string"),
        other => panic!("{other:?}"),
    }
    #[derive(Serialize)]
    struct OnlyOrder<'a> {
        order_id: &'a str,
    }
    match store.execute::<CounterpointSlice>("place-order", &OnlyOrder { order_id: "o-1" }) {
        Err(Error::InvalidInput(m)) => assert_eq!(m, "missing field `customer_id`"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        add(&mut store, "o-1", "apple", 0, 1),
        Err(Error::InvalidInput(_))
    ));
    match store.execute::<CounterpointSlice>("ship-order", &OnlyOrder { order_id: "o-1" }) {
        Err(Error::NotFound(m)) => assert!(m.starts_with("unknown command `ship-order`"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        summary(&mut store, "o-9"),
        Err(Error::NotFound(_))
    ));
    assert!(store.events().is_empty());
}

#[test]
fn execute_returns_msgpack_with_named_fields() {
    let mut store = TestStore::new();
    #[derive(Serialize)]
    struct Place<'a> {
        order_id: &'a str,
        customer_id: &'a str,
    }
    let out = store.execute::<CounterpointSlice>(
        "place-order",
        &Place {
            order_id: "o-1",
            customer_id: "c-1",
        },
    );
    let receipt: Receipt = rmp_serde::from_slice(&out.unwrap()).unwrap();
    assert_eq!(
        receipt,
        Receipt {
            order_id: "o-1".into(),
            status: Status::Placed,
            total: 0
        }
    );
}

#[test]
fn customer_orders_and_the_last_n() {
    let mut store = TestStore::new();
    for id in ["o-1", "o-2", "o-3"] {
        place(&mut store, id, "c-1").unwrap();
        add(&mut store, id, "apple", 1, 1).unwrap();
    }
    place(&mut store, "o-4", "c-2").unwrap();
    #[derive(Serialize)]
    struct Params {
        customer_id: &'static str,
        last: Option<u64>,
    }
    let all = store
        .project::<CustomerOrders>(&Params {
            customer_id: "c-1",
            last: None,
        })
        .unwrap();
    assert_eq!(
        all,
        CustomerOrdersView {
            customer_id: "c-1".into(),
            orders: vec!["o-1".into(), "o-2".into(), "o-3".into()]
        }
    );
    let last = store
        .project::<CustomerOrders>(&Params {
            customer_id: "c-1",
            last: Some(2),
        })
        .unwrap();
    assert_eq!(last.orders, ["o-2", "o-3"]);
}

#[test]
fn describes_itself_and_tags_events() {
    let d = CounterpointSlice::describe();
    assert_eq!((d.name.as_str(), d.version.as_str()), ("orders", "0.1.0"));
    let commands: Vec<&str> = d.commands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        commands,
        ["place-order", "add-item", "confirm-order", "cancel-order"]
    );
    let add_item: Vec<(&str, &str)> = d.commands[1]
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.kind.as_str()))
        .collect();
    assert_eq!(
        add_item,
        [
            ("order_id", "string"),
            ("sku", "string"),
            ("qty", "integer"),
            ("price", "integer")
        ]
    );
    let projections: Vec<&str> = d.projections.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(projections, ["order-summary", "customer-orders"]);
    assert_eq!(
        d.projections[1]
            .params
            .iter()
            .map(|f| f.kind.as_str())
            .collect::<Vec<_>>(),
        ["string", "integer?"]
    );
    assert_eq!(
        d.emits,
        [
            "OrderPlaced",
            "ItemAdded",
            "OrderConfirmed",
            "OrderCancelled"
        ]
    );
    assert_eq!(d.automations[0].name, "cancel-when-out-of-stock");

    let data = rmp_serde::to_vec_named(&OrderCancelled {
        order_id: "o-1".into(),
        reason: "x".into(),
    })
    .unwrap();
    assert_eq!(
        CounterpointSlice::tags("OrderCancelled", &data).unwrap(),
        ["order_id:o-1"]
    );
    assert!(matches!(
        CounterpointSlice::tags("StockReceived", &data),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        CounterpointSlice::tags("OrderPlaced", &data),
        Err(Error::InvalidInput(_))
    ));
}
