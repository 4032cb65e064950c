use counterpoint_sdk::Position;
use counterpoint_sdk::prelude::*;

use crate::events::{ItemAdded, OrderCancelled, OrderConfirmed, OrderPlaced};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not placed yet: the order does not exist.
    New,
    Placed,
    Confirmed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub sku: String,
    pub qty: u32,
    pub price: u64,
}

#[derive(Debug, Deserialize)]
pub struct OrderRef {
    pub order_id: String,
}

impl OrderRef {
    pub fn new(order_id: &str) -> Self {
        OrderRef {
            order_id: order_id.into(),
        }
    }
}

/// One order: the `order-summary` projection, and the decision model of every command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub customer_id: String,
    pub status: Status,
    pub items: Vec<Line>,
    /// Sum of qty × price, in cents.
    pub total: u64,
    /// Why it was cancelled, if it was.
    pub reason: Option<String>,
}

impl Projection for Order {
    const NAME: &'static str = "order-summary";
    const DESCRIPTION: &'static str = "An order's status, items and total";
    type Params = OrderRef;
    type Output = Order;

    fn init(params: &OrderRef) -> Self {
        Order {
            order_id: params.order_id.clone(),
            customer_id: String::new(),
            status: Status::New,
            items: Vec::new(),
            total: 0,
            reason: None,
        }
    }

    fn source(params: &OrderRef) -> Query {
        Query::of::<OrderPlaced>()
            .or_of::<ItemAdded>()
            .or_of::<OrderConfirmed>()
            .or_of::<OrderCancelled>()
            .tag(tag("order_id", &params.order_id))
    }

    fn apply(&mut self, event: &Envelope) -> Result<(), Error> {
        match event.event_type() {
            OrderPlaced::TYPE => {
                self.customer_id = event.decode::<OrderPlaced>()?.customer_id;
                self.status = Status::Placed;
            }
            ItemAdded::TYPE => {
                let ItemAdded {
                    sku, qty, price, ..
                } = event.decode()?;
                self.total += u64::from(qty) * price;
                self.items.push(Line { sku, qty, price });
            }
            OrderConfirmed::TYPE => self.status = Status::Confirmed,
            OrderCancelled::TYPE => {
                self.reason = Some(event.decode::<OrderCancelled>()?.reason);
                self.status = Status::Cancelled;
            }
            _ => {}
        }
        Ok(())
    }

    fn output(self) -> Result<Order, Error> {
        match self.status {
            Status::New => Err(Error::not_found(format!("no order {}", self.order_id))),
            _ => Ok(self),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct CustomerRef {
    pub customer_id: String,
    /// Only the customer's last N orders.
    pub last: Option<u64>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomerOrdersView {
    pub customer_id: String,
    /// Order ids, oldest first.
    pub orders: Vec<String>,
}

/// The orders a customer placed (`customer-orders`).
#[derive(Debug)]
pub struct CustomerOrders {
    customer_id: String,
    placed: Vec<(Position, String)>,
}

impl Projection for CustomerOrders {
    const NAME: &'static str = "customer-orders";
    const DESCRIPTION: &'static str = "The orders a customer placed, optionally only the last N";
    type Params = CustomerRef;
    type Output = CustomerOrdersView;

    fn init(params: &CustomerRef) -> Self {
        CustomerOrders {
            customer_id: params.customer_id.clone(),
            placed: Vec::new(),
        }
    }

    fn source(params: &CustomerRef) -> Query {
        Query::of::<OrderPlaced>().tag(tag("customer_id", &params.customer_id))
    }

    fn options(params: &CustomerRef) -> ReadOptions {
        params.last.map_or_else(ReadOptions::new, ReadOptions::last)
    }

    fn apply(&mut self, event: &Envelope) -> Result<(), Error> {
        let placed: OrderPlaced = event.decode()?;
        self.placed.push((event.position, placed.order_id));
        Ok(())
    }

    fn output(mut self) -> Result<CustomerOrdersView, Error> {
        // "The last N" arrives newest first.
        self.placed.sort_unstable_by_key(|(position, _)| *position);
        let orders = self
            .placed
            .into_iter()
            .map(|(_, order_id)| order_id)
            .collect();
        Ok(CustomerOrdersView {
            customer_id: self.customer_id,
            orders,
        })
    }
}
