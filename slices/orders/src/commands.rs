use counterpoint_sdk::prelude::*;

use crate::events::{ItemAdded, OrderCancelled, OrderConfirmed, OrderPlaced, StockReservationFailed};
use crate::projections::{Order, OrderRef, Status};

/// What every orders command returns: the order's state after it.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub order_id: String,
    pub status: Status,
    pub total: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub order_id: String,
    pub customer_id: String,
}

impl Command for PlaceOrder {
    const NAME: &'static str = "place-order";
    const DESCRIPTION: &'static str = "Places a new, empty order for a customer";
    type Output = Receipt;

    fn run(self, ctx: &mut Context) -> Result<Receipt, Error> {
        if self.order_id.is_empty() || self.customer_id.is_empty() {
            return Err(Error::invalid_input(
                "order_id and customer_id must not be empty",
            ));
        }
        let order = ctx.fold::<Order>(OrderRef::new(&self.order_id))?;
        if order.status != Status::New {
            return Err(Error::rejected(format!(
                "order {} is already placed",
                self.order_id
            )));
        }
        ctx.append(OrderPlaced {
            order_id: self.order_id.clone(),
            customer_id: self.customer_id,
        });
        Ok(Receipt {
            order_id: self.order_id,
            status: Status::Placed,
            total: 0,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AddItem {
    pub order_id: String,
    pub sku: String,
    pub qty: u32,
    /// Unit price in cents.
    pub price: u64,
}

impl Command for AddItem {
    const NAME: &'static str = "add-item";
    const DESCRIPTION: &'static str =
        "Adds qty of a product at a unit price (cents) to a placed order";
    type Output = Receipt;

    fn run(self, ctx: &mut Context) -> Result<Receipt, Error> {
        if self.qty == 0 || self.sku.is_empty() {
            return Err(Error::invalid_input(
                "an item needs a sku and a qty of at least 1",
            ));
        }
        let order = ctx.fold::<Order>(OrderRef::new(&self.order_id))?;
        must_be_open(&order)?;
        let total = order.total + u64::from(self.qty) * self.price;
        let Self {
            order_id,
            sku,
            qty,
            price,
        } = self;
        ctx.append(ItemAdded {
            order_id: order_id.clone(),
            sku,
            qty,
            price,
        });
        Ok(Receipt {
            order_id,
            status: Status::Placed,
            total,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ConfirmOrder {
    pub order_id: String,
}

impl Command for ConfirmOrder {
    const NAME: &'static str = "confirm-order";
    const DESCRIPTION: &'static str = "Confirms a placed order that has items";
    type Output = Receipt;

    fn run(self, ctx: &mut Context) -> Result<Receipt, Error> {
        let order = ctx.fold::<Order>(OrderRef::new(&self.order_id))?;
        must_be_open(&order)?;
        if order.items.is_empty() {
            return Err(Error::rejected(format!(
                "order {} has no items",
                self.order_id
            )));
        }
        ctx.append(OrderConfirmed {
            order_id: self.order_id.clone(),
        });
        Ok(Receipt {
            order_id: self.order_id,
            status: Status::Confirmed,
            total: order.total,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CancelOrder {
    pub order_id: String,
    pub reason: String,
}

impl Command for CancelOrder {
    const NAME: &'static str = "cancel-order";
    const DESCRIPTION: &'static str = "Cancels a placed or confirmed order";
    type Output = Receipt;

    fn run(self, ctx: &mut Context) -> Result<Receipt, Error> {
        let order = ctx.fold::<Order>(OrderRef::new(&self.order_id))?;
        let id = &self.order_id;
        match order.status {
            Status::Placed | Status::Confirmed => {}
            Status::New => return Err(Error::rejected(format!("order {id} is not placed"))),
            Status::Cancelled => return Err(Error::rejected(format!("order {id} is cancelled"))),
        }
        ctx.append(OrderCancelled {
            order_id: self.order_id.clone(),
            reason: self.reason,
        });
        Ok(Receipt {
            order_id: self.order_id,
            status: Status::Cancelled,
            total: order.total,
        })
    }
}

/// Items can be added, and the order confirmed or cancelled, only while it is placed.
fn must_be_open(order: &Order) -> Result<(), Error> {
    let id = &order.order_id;
    match order.status {
        Status::Placed => Ok(()),
        Status::New => Err(Error::rejected(format!("order {id} is not placed"))),
        Status::Confirmed => Err(Error::rejected(format!("order {id} is already confirmed"))),
        Status::Cancelled => Err(Error::rejected(format!("order {id} is cancelled"))),
    }
}

/// When stock cannot be reserved for an order, cancel it.
pub struct CancelWhenOutOfStock;

impl Automation for CancelWhenOutOfStock {
    const NAME: &'static str = "cancel-when-out-of-stock";
    const DESCRIPTION: &'static str = "Cancels an order whose stock could not be reserved";

    fn query() -> Query {
        Query::of::<StockReservationFailed>()
    }

    fn react(event: &Envelope) -> Result<Vec<CommandCall>, Error> {
        let failed: StockReservationFailed = event.decode()?;
        let cancel = CancelOrder { order_id: failed.order_id, reason: failed.reason };
        Ok(vec![CommandCall::new("orders", CancelOrder::NAME, &cancel)?])
    }
}
