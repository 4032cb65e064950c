//! The inventory slice: stock is received per product (sku) and reserved for orders.
//! Reserving reads the orders slice's events too, through its own view of them: slices
//! share the log, never code.

use counterpoint_sdk::prelude::*;

// --- Events this slice appends ---

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockReceived {
    pub sku: String,
    pub qty: u32,
}

impl Event for StockReceived {
    const TYPE: &'static str = "StockReceived";
    fn tags(&self) -> Vec<String> {
        vec![tag("sku", &self.sku)]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockReserved {
    pub sku: String,
    pub order_id: String,
    pub qty: u32,
}

impl Event for StockReserved {
    const TYPE: &'static str = "StockReserved";
    fn tags(&self) -> Vec<String> {
        vec![tag("sku", &self.sku), tag("order_id", &self.order_id)]
    }
}

/// Stock could not be reserved for a confirmed order: a fact the orders slice reacts to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockReservationFailed {
    pub order_id: String,
    pub reason: String,
}

impl Event for StockReservationFailed {
    const TYPE: &'static str = "StockReservationFailed";
    fn tags(&self) -> Vec<String> {
        vec![tag("order_id", &self.order_id)]
    }
}

// --- The orders slice's events, as far as inventory cares (other fields are ignored) ---

#[derive(Debug, Serialize, Deserialize)]
pub struct ItemAdded {
    pub order_id: String,
    pub sku: String,
    pub qty: u32,
}

impl Event for ItemAdded {
    const TYPE: &'static str = "ItemAdded";
    fn tags(&self) -> Vec<String> {
        vec![tag("order_id", &self.order_id), tag("sku", &self.sku)]
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OrderConfirmed {
    pub order_id: String,
}

impl Event for OrderConfirmed {
    const TYPE: &'static str = "OrderConfirmed";
    fn tags(&self) -> Vec<String> {
        vec![tag("order_id", &self.order_id)]
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: String,
}

impl Event for OrderPlaced {
    const TYPE: &'static str = "OrderPlaced";
    fn tags(&self) -> Vec<String> {
        vec![tag("order_id", &self.order_id)]
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: String,
}

impl Event for OrderCancelled {
    const TYPE: &'static str = "OrderCancelled";
    fn tags(&self) -> Vec<String> {
        vec![tag("order_id", &self.order_id)]
    }
}

// --- Commands ---

#[derive(Debug, Serialize, Deserialize)]
pub struct ReceiveStock {
    pub sku: String,
    pub qty: u32,
}

impl Command for ReceiveStock {
    const NAME: &'static str = "receive-stock";
    const DESCRIPTION: &'static str = "Adds received units of a product to its stock";
    type Output = ();

    // Reads nothing: receiving stock is always allowed, so it needs no consistency boundary.
    fn run(self, ctx: &mut Context) -> Result<(), Error> {
        if self.sku.is_empty() || self.qty == 0 {
            return Err(Error::invalid_input(
                "stock needs a sku and a qty of at least 1",
            ));
        }
        ctx.append(StockReceived {
            sku: self.sku,
            qty: self.qty,
        });
        Ok(())
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReserveStock {
    pub order_id: String,
    pub sku: String,
    pub qty: u32,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    pub order_id: String,
    pub sku: String,
    pub qty: u32,
    /// Units of the sku still available after this reservation.
    pub available: u64,
}

impl Command for ReserveStock {
    const NAME: &'static str = "reserve-stock";
    const DESCRIPTION: &'static str =
        "Reserves units of a product for a placed order, once per product";
    type Output = Reservation;

    // Both reads are the boundary: the product's stock and the order's life in the orders slice.
    fn run(self, ctx: &mut Context) -> Result<Reservation, Error> {
        if self.qty == 0 {
            return Err(Error::invalid_input("qty must be at least 1"));
        }
        let stock = ctx.fold::<StockLevel>(SkuRef {
            sku: self.sku.clone(),
        })?;
        let order = ctx.read(
            Query::of::<OrderPlaced>()
                .or_of::<OrderCancelled>()
                .tag(tag("order_id", &self.order_id)),
        )?;
        let id = &self.order_id;
        if !order.has::<OrderPlaced>() {
            return Err(Error::rejected(format!("order {id} is not placed")));
        }
        if order.has::<OrderCancelled>() {
            return Err(Error::rejected(format!("order {id} is cancelled")));
        }
        if stock.reserved_for.contains(id) {
            return Err(Error::rejected(format!(
                "{} is already reserved for order {id}",
                self.sku
            )));
        }
        if stock.available < u64::from(self.qty) {
            return Err(Error::rejected(format!(
                "only {} of {} available",
                stock.available, self.sku
            )));
        }
        let available = stock.available - u64::from(self.qty);
        let Self { order_id, sku, qty } = self;
        ctx.append(StockReserved {
            sku: sku.clone(),
            order_id: order_id.clone(),
            qty,
        });
        Ok(Reservation {
            order_id,
            sku,
            qty,
            available,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReserveOrder {
    pub order_id: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderReservation {
    pub order_id: String,
    pub reserved: bool,
    pub reason: Option<String>,
}

impl Command for ReserveOrder {
    const NAME: &'static str = "reserve-order";
    const DESCRIPTION: &'static str =
        "Reserves every item of a confirmed order, all or nothing; records a failure otherwise";
    type Output = OrderReservation;

    // One boundary over the order's events and the stock of every product it holds.
    fn run(self, ctx: &mut Context) -> Result<OrderReservation, Error> {
        let id = self.order_id.clone();
        let order = ctx.read(
            Query::of::<OrderPlaced>()
                .or_of::<OrderCancelled>()
                .or_of::<ItemAdded>()
                .or_of::<StockReserved>()
                .or_of::<StockReservationFailed>()
                .tag(tag("order_id", &id)),
        )?;
        if !order.has::<OrderPlaced>() {
            return Err(Error::rejected(format!("order {id} is not placed")));
        }
        // Automations run at least once: a decided order is answered, not decided again.
        if order.has::<StockReserved>() {
            return Ok(OrderReservation { order_id: id, reserved: true, reason: None });
        }
        if let Some(failed) = order.of_type::<StockReservationFailed>()?.pop() {
            return Ok(OrderReservation { order_id: id, reserved: false, reason: Some(failed.reason) });
        }
        if order.has::<OrderCancelled>() {
            return Err(Error::rejected(format!("order {id} is cancelled")));
        }
        let mut wanted: Vec<(String, u64)> = Vec::new();
        for item in order.of_type::<ItemAdded>()? {
            match wanted.iter_mut().find(|(sku, _)| *sku == item.sku) {
                Some((_, qty)) => *qty += u64::from(item.qty),
                None => wanted.push((item.sku, u64::from(item.qty))),
            }
        }
        for (sku, qty) in &wanted {
            let stock = ctx.fold::<StockLevel>(SkuRef { sku: sku.clone() })?;
            if stock.available < *qty {
                let reason = format!("only {} of {sku} available, {qty} needed", stock.available);
                ctx.append(StockReservationFailed { order_id: id.clone(), reason: reason.clone() });
                return Ok(OrderReservation { order_id: id, reserved: false, reason: Some(reason) });
            }
        }
        for (sku, qty) in wanted {
            let qty = u32::try_from(qty).map_err(|_| Error::invalid_input("quantity too large"))?;
            ctx.append(StockReserved { sku, order_id: id.clone(), qty });
        }
        Ok(OrderReservation { order_id: id, reserved: true, reason: None })
    }
}

// --- Automations ---

/// When an order is confirmed, reserve its stock.
pub struct ReserveOnConfirm;

impl Automation for ReserveOnConfirm {
    const NAME: &'static str = "reserve-on-confirm";
    const DESCRIPTION: &'static str = "Reserves a confirmed order's stock";

    fn query() -> Query {
        Query::of::<OrderConfirmed>()
    }

    fn react(event: &Envelope) -> Result<Vec<CommandCall>, Error> {
        let confirmed: OrderConfirmed = event.decode()?;
        Ok(vec![CommandCall::new("inventory", ReserveOrder::NAME, &ReserveOrder { order_id: confirmed.order_id })?])
    }
}

// --- Projections ---

#[derive(Debug, Serialize, Deserialize)]
pub struct SkuRef {
    pub sku: String,
}

/// A product's stock (`stock-level`), and reserve-stock's decision model.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct StockLevel {
    pub sku: String,
    pub received: u64,
    pub reserved: u64,
    pub available: u64,
    /// The orders holding a reservation; not part of the output.
    #[serde(skip)]
    pub reserved_for: Vec<String>,
}

impl Projection for StockLevel {
    const NAME: &'static str = "stock-level";
    const DESCRIPTION: &'static str = "Units of a product received, reserved and available";
    type Params = SkuRef;
    type Output = StockLevel;

    fn init(params: &SkuRef) -> Self {
        StockLevel {
            sku: params.sku.clone(),
            received: 0,
            reserved: 0,
            available: 0,
            reserved_for: Vec::new(),
        }
    }

    fn source(params: &SkuRef) -> Query {
        Query::of::<StockReceived>()
            .or_of::<StockReserved>()
            .tag(tag("sku", &params.sku))
    }

    fn apply(&mut self, event: &Envelope) -> Result<(), Error> {
        match event.event_type() {
            StockReceived::TYPE => self.received += u64::from(event.decode::<StockReceived>()?.qty),
            StockReserved::TYPE => {
                let reservation: StockReserved = event.decode()?;
                self.reserved += u64::from(reservation.qty);
                self.reserved_for.push(reservation.order_id);
            }
            _ => {}
        }
        // Never below zero, even if the log holds more reservations than stock.
        self.available = self.received.saturating_sub(self.reserved);
        Ok(())
    }

    fn output(self) -> Result<StockLevel, Error> {
        Ok(self)
    }
}

// --- Read models ---

/// Every product's stock, kept by the host as it follows the log: answers without replaying it.
pub struct StockLevels;

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub sku: String,
    pub received: u64,
    pub reserved: u64,
    pub available: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StockQuery {
    /// One product; without it, every product (in sku order, at most 1,000).
    pub sku: Option<String>,
}

impl StockLevels {
    fn key(sku: &str) -> String {
        format!("sku/{sku}")
    }

    fn change(state: &mut State, sku: &str, change: impl FnOnce(&mut Level)) -> Result<(), Error> {
        state.update(&Self::key(sku), |level: &mut Level| {
            level.sku = sku.to_string();
            change(level);
            level.available = level.received.saturating_sub(level.reserved);
        })
    }
}

impl ReadModel for StockLevels {
    const NAME: &'static str = "stock-levels";
    const DESCRIPTION: &'static str = "Units received, reserved and available, per product";
    type Params = StockQuery;
    type Output = Vec<Level>;

    fn source() -> Query {
        Query::of::<StockReceived>().or_of::<StockReserved>()
    }

    fn apply(state: &mut State, event: &Envelope) -> Result<(), Error> {
        match event.event_type() {
            StockReceived::TYPE => {
                let received: StockReceived = event.decode()?;
                Self::change(state, &received.sku, |l| l.received += u64::from(received.qty))
            }
            StockReserved::TYPE => {
                let reserved: StockReserved = event.decode()?;
                Self::change(state, &reserved.sku, |l| l.reserved += u64::from(reserved.qty))
            }
            _ => Ok(()),
        }
    }

    fn query(state: &State, params: StockQuery) -> Result<Vec<Level>, Error> {
        match params.sku {
            Some(sku) => Ok(state.get(&Self::key(&sku))?.into_iter().collect()),
            None => Ok(state.scan("sku/", None, 1_000)?.into_iter().map(|(_, level)| level).collect()),
        }
    }
}

counterpoint_sdk::slice! {
    name: "inventory", version: env!("CARGO_PKG_VERSION"),
    events: [StockReceived, StockReserved, StockReservationFailed],
    commands: [ReceiveStock, ReserveStock, ReserveOrder],
    projections: [StockLevel],
    automations: [ReserveOnConfirm],
    read_models: [StockLevels],
}

#[cfg(test)]
mod tests;
