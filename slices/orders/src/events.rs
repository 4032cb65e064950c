use counterpoint_sdk::prelude::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: String,
    pub customer_id: String,
}

impl Event for OrderPlaced {
    const TYPE: &'static str = "OrderPlaced";
    fn tags(&self) -> Vec<String> {
        vec![
            tag("order_id", &self.order_id),
            tag("customer_id", &self.customer_id),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemAdded {
    pub order_id: String,
    pub sku: String,
    pub qty: u32,
    /// Unit price in cents.
    pub price: u64,
}

impl Event for ItemAdded {
    const TYPE: &'static str = "ItemAdded";
    fn tags(&self) -> Vec<String> {
        vec![tag("order_id", &self.order_id), tag("sku", &self.sku)]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderConfirmed {
    pub order_id: String,
}

impl Event for OrderConfirmed {
    const TYPE: &'static str = "OrderConfirmed";
    fn tags(&self) -> Vec<String> {
        vec![tag("order_id", &self.order_id)]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: String,
    pub reason: String,
}

impl Event for OrderCancelled {
    const TYPE: &'static str = "OrderCancelled";
    fn tags(&self) -> Vec<String> {
        vec![tag("order_id", &self.order_id)]
    }
}

/// The inventory slice's word that a confirmed order's stock could not be reserved.
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
