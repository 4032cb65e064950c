//! The orders slice: an order is placed for a customer, filled with items, then confirmed
//! or cancelled. Amounts are integer cents.

mod commands;
mod events;
mod projections;

pub use commands::{AddItem, CancelOrder, CancelWhenOutOfStock, ConfirmOrder, PlaceOrder, Receipt};
pub use events::{ItemAdded, OrderCancelled, OrderConfirmed, OrderPlaced, StockReservationFailed};
pub use projections::{CustomerOrders, Line, Order, Status};

counterpoint_sdk::slice! {
    name: "orders", version: env!("CARGO_PKG_VERSION"),
    events: [OrderPlaced, ItemAdded, OrderConfirmed, OrderCancelled],
    commands: [PlaceOrder, AddItem, ConfirmOrder, CancelOrder],
    projections: [Order, CustomerOrders],
    automations: [CancelWhenOutOfStock],
}

#[cfg(test)]
mod tests;
