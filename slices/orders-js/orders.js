// The orders slice, in JavaScript: an order is placed for a customer, filled with items, then
// confirmed or cancelled. Amounts are integer cents. The same commands, events, tags and
// projections as the Rust `orders` slice, so either can serve the same log, and the Python
// slice's `orders-by-customer` read model.

import { CommandCall, comparePositions, defineEvent, InvalidInput, NotFound, Query, ReadOptions, Rejected, Slice, t, tag } from "@counterpoint/slice-sdk";

export const orders = new Slice("orders", "0.1.0");

// --- Events ---

export const OrderPlaced = orders.event("OrderPlaced", {
  fields: { order_id: t.string, customer_id: t.string },
  tags: (e) => [tag("order_id", e.order_id), tag("customer_id", e.customer_id)],
});

export const ItemAdded = orders.event("ItemAdded", {
  // price: the unit price in cents
  fields: { order_id: t.string, sku: t.string, qty: t.u32, price: t.u64 },
  tags: (e) => [tag("order_id", e.order_id), tag("sku", e.sku)],
});

export const OrderConfirmed = orders.event("OrderConfirmed", {
  fields: { order_id: t.string },
  tags: (e) => [tag("order_id", e.order_id)],
});

export const OrderCancelled = orders.event("OrderCancelled", {
  fields: { order_id: t.string, reason: t.string },
  tags: (e) => [tag("order_id", e.order_id)],
});

/** The inventory slice's word that a confirmed order's stock could not be reserved. */
export const StockReservationFailed = defineEvent("StockReservationFailed", {
  fields: { order_id: t.string, reason: t.string },
});

// --- Projections ---

/** One order: the `order-summary` projection, and the decision model of every command.
 * `status` is new (not placed yet: the order does not exist), placed, confirmed or cancelled. */
export const Order = orders.projection("order-summary", {
  description: "An order's status, items and total",
  params: { order_id: t.string },
  init: ({ order_id }) => ({ order_id, customer_id: "", status: "new", items: [], total: 0, reason: null }),
  source: ({ order_id }) =>
    Query.of(OrderPlaced).orOf(ItemAdded).orOf(OrderConfirmed).orOf(OrderCancelled).tag(tag("order_id", order_id)),
  apply(order, event) {
    if (event.is(OrderPlaced)) {
      order.customer_id = event.decode(OrderPlaced).customer_id;
      order.status = "placed";
    } else if (event.is(ItemAdded)) {
      const { sku, qty, price } = event.decode(ItemAdded);
      order.total += qty * price;
      order.items.push({ sku, qty, price });
    } else if (event.is(OrderConfirmed)) {
      order.status = "confirmed";
    } else if (event.is(OrderCancelled)) {
      order.reason = event.decode(OrderCancelled).reason;
      order.status = "cancelled";
    }
  },
  output(order) {
    if (order.status === "new") throw new NotFound(`no order ${order.order_id}`);
    return order;
  },
});

/** The orders a customer placed (`customer-orders`), optionally only the last N. */
export const CustomerOrders = orders.projection("customer-orders", {
  description: "The orders a customer placed, optionally only the last N",
  params: { customer_id: t.string, last: t.optional(t.u64) },
  init: ({ customer_id }) => ({ customer_id, placed: [] }),
  source: ({ customer_id }) => Query.of(OrderPlaced).tag(tag("customer_id", customer_id)),
  options: ({ last }) => (last === null ? new ReadOptions() : ReadOptions.last(last)),
  apply(state, event) {
    state.placed.push([event.position, event.decode(OrderPlaced).order_id]);
  },
  output({ customer_id, placed }) {
    // "The last N" arrives newest first.
    placed.sort(([a], [b]) => comparePositions(a, b));
    return { customer_id, orders: placed.map(([, orderId]) => orderId) };
  },
});

// --- Read models ---

/** The orders each customer placed (`orders-by-customer`), kept by the host as they are placed.
 * State: per customer id, the ids of the orders placed, oldest first. */
export const OrdersByCustomer = orders.readModel("orders-by-customer", {
  description: "The orders each customer placed, kept as they are placed",
  source: Query.of(OrderPlaced),
  params: { customer_id: t.string },
  apply(state, event) {
    const { order_id, customer_id } = event.decode(OrderPlaced);
    state.update(customer_id, (ids) => [...ids, order_id], []);
  },
  query: (state, { customer_id }) => ({ customer_id, orders: state.get(customer_id, []) }),
});

// --- Commands: each returns a receipt, the order's state after it ---

const receipt = (order_id, status, total) => ({ order_id, status, total });

/** Items can be added, and the order confirmed or cancelled, only while it is placed. */
function mustBeOpen(order) {
  const why = { new: "is not placed", confirmed: "is already confirmed", cancelled: "is cancelled" };
  if (order.status !== "placed") throw new Rejected(`order ${order.order_id} ${why[order.status]}`);
}

orders.command("place-order", {
  description: "Places a new, empty order for a customer",
  input: { order_id: t.string, customer_id: t.string },
  run({ order_id, customer_id }, ctx) {
    if (!order_id || !customer_id) throw new InvalidInput("order_id and customer_id must not be empty");
    const order = ctx.fold(Order, { order_id });
    if (order.status !== "new") throw new Rejected(`order ${order_id} is already placed`);
    ctx.append(OrderPlaced, { order_id, customer_id });
    return receipt(order_id, "placed", 0);
  },
});

orders.command("add-item", {
  description: "Adds qty of a product at a unit price (cents) to a placed order",
  input: { order_id: t.string, sku: t.string, qty: t.u32, price: t.u64 },
  run({ order_id, sku, qty, price }, ctx) {
    if (qty === 0 || !sku) throw new InvalidInput("an item needs a sku and a qty of at least 1");
    const order = ctx.fold(Order, { order_id });
    mustBeOpen(order);
    ctx.append(ItemAdded, { order_id, sku, qty, price });
    return receipt(order_id, "placed", order.total + qty * price);
  },
});

orders.command("confirm-order", {
  description: "Confirms a placed order that has items",
  input: { order_id: t.string },
  run({ order_id }, ctx) {
    const order = ctx.fold(Order, { order_id });
    mustBeOpen(order);
    if (order.items.length === 0) throw new Rejected(`order ${order_id} has no items`);
    ctx.append(OrderConfirmed, { order_id });
    return receipt(order_id, "confirmed", order.total);
  },
});

orders.command("cancel-order", {
  description: "Cancels a placed or confirmed order",
  input: { order_id: t.string, reason: t.string },
  run({ order_id, reason }, ctx) {
    const order = ctx.fold(Order, { order_id });
    if (order.status === "new") throw new Rejected(`order ${order_id} is not placed`);
    if (order.status === "cancelled") throw new Rejected(`order ${order_id} is cancelled`);
    ctx.append(OrderCancelled, { order_id, reason });
    return receipt(order_id, "cancelled", order.total);
  },
});

// --- Automations ---

/** When stock cannot be reserved for an order, cancel it. */
orders.automation("cancel-when-out-of-stock", {
  description: "Cancels an order whose stock could not be reserved",
  query: Query.of(StockReservationFailed),
  react(event) {
    const { order_id, reason } = event.decode(StockReservationFailed);
    return [new CommandCall("orders", "cancel-order", { order_id, reason })];
  },
});
