"""The orders slice, in Python: an order is placed for a customer, filled with items, then
confirmed or cancelled. Amounts are integer cents. The same commands, events, tags and
projections as the Rust `orders` slice, so either can serve the same log."""

from dataclasses import dataclass, field
from typing import List, Optional

from counterpoint import U32, U64, CommandCall, Envelope, InvalidInput, NotFound, Query, ReadOptions, Rejected, Slice, event, tag

orders = Slice("orders", "0.1.0")

# --- Events ---


@orders.event("OrderPlaced")
@dataclass
class OrderPlaced:
    order_id: str
    customer_id: str

    def tags(self):
        return [tag("order_id", self.order_id), tag("customer_id", self.customer_id)]


@orders.event("ItemAdded")
@dataclass
class ItemAdded:
    order_id: str
    sku: str
    qty: U32
    price: U64  # unit price in cents

    def tags(self):
        return [tag("order_id", self.order_id), tag("sku", self.sku)]


@orders.event("OrderConfirmed")
@dataclass
class OrderConfirmed:
    order_id: str

    def tags(self):
        return [tag("order_id", self.order_id)]


@orders.event("OrderCancelled")
@dataclass
class OrderCancelled:
    order_id: str
    reason: str

    def tags(self):
        return [tag("order_id", self.order_id)]


@event("StockReservationFailed")
@dataclass
class StockReservationFailed:
    """The inventory slice's word that a confirmed order's stock could not be reserved."""

    order_id: str
    reason: str


# --- Projections ---


@dataclass
class Line:
    sku: str
    qty: int
    price: int


@dataclass
class OrderRef:
    order_id: str


@orders.projection("order-summary", "An order's status, items and total", params=OrderRef)
class Order:
    """One order: the `order-summary` projection, and the decision model of every command.
    `status` is new (not placed yet: the order does not exist), placed, confirmed or cancelled."""

    def __init__(self, params: OrderRef):
        self.order_id = params.order_id
        self.customer_id = ""
        self.status = "new"
        self.items: List[Line] = []
        self.total = 0  # sum of qty x price, in cents
        self.reason: Optional[str] = None

    @staticmethod
    def source(params: OrderRef) -> Query:
        return (
            Query.of(OrderPlaced)
            .or_of(ItemAdded)
            .or_of(OrderConfirmed)
            .or_of(OrderCancelled)
            .tag(tag("order_id", params.order_id))
        )

    def apply(self, event: Envelope) -> None:
        if event.is_(OrderPlaced):
            self.customer_id = event.decode(OrderPlaced).customer_id
            self.status = "placed"
        elif event.is_(ItemAdded):
            item = event.decode(ItemAdded)
            self.total += item.qty * item.price
            self.items.append(Line(item.sku, item.qty, item.price))
        elif event.is_(OrderConfirmed):
            self.status = "confirmed"
        elif event.is_(OrderCancelled):
            self.reason = event.decode(OrderCancelled).reason
            self.status = "cancelled"

    def output(self):
        if self.status == "new":
            raise NotFound(f"no order {self.order_id}")
        return {
            "order_id": self.order_id,
            "customer_id": self.customer_id,
            "status": self.status,
            "items": self.items,
            "total": self.total,
            "reason": self.reason,
        }


@dataclass
class CustomerRef:
    customer_id: str
    last: Optional[U64] = None  # only the customer's last N orders


@orders.projection("customer-orders", "The orders a customer placed, optionally only the last N", params=CustomerRef)
class CustomerOrders:
    def __init__(self, params: CustomerRef):
        self.customer_id = params.customer_id
        self.placed = []  # (position, order_id)

    @staticmethod
    def source(params: CustomerRef) -> Query:
        return Query.of(OrderPlaced).tag(tag("customer_id", params.customer_id))

    @staticmethod
    def options(params: CustomerRef) -> ReadOptions:
        return ReadOptions() if params.last is None else ReadOptions.last(params.last)

    def apply(self, event: Envelope) -> None:
        self.placed.append((event.position, event.decode(OrderPlaced).order_id))

    def output(self):
        # "The last N" arrives newest first.
        self.placed.sort()
        return {"customer_id": self.customer_id, "orders": [order_id for _, order_id in self.placed]}


# --- Read models ---


@dataclass
class CustomerId:
    customer_id: str


@orders.read_model("orders-by-customer", Query.of(OrderPlaced), "The orders each customer placed, kept as they are placed", params=CustomerId)
class OrdersByCustomer:
    """State: per customer id, the ids of the orders placed, oldest first."""

    @staticmethod
    def apply(state, event: Envelope) -> None:
        placed = event.decode(OrderPlaced)
        state.update(placed.customer_id, lambda ids: ids + [placed.order_id], default=[])

    @staticmethod
    def query(state, params: CustomerId):
        return {"customer_id": params.customer_id, "orders": state.get(params.customer_id, default=[])}


# --- Commands ---


@dataclass
class Receipt:
    """What every orders command returns: the order's state after it."""

    order_id: str
    status: str
    total: int


def must_be_open(order: Order) -> None:
    """Items can be added, and the order confirmed or cancelled, only while it is placed."""
    why = {"new": "is not placed", "confirmed": "is already confirmed", "cancelled": "is cancelled"}
    if order.status != "placed":
        raise Rejected(f"order {order.order_id} {why[order.status]}")


@orders.command("place-order", "Places a new, empty order for a customer")
@dataclass
class PlaceOrder:
    order_id: str
    customer_id: str

    def run(self, ctx) -> Receipt:
        if not self.order_id or not self.customer_id:
            raise InvalidInput("order_id and customer_id must not be empty")
        order = ctx.fold(Order, OrderRef(self.order_id))
        if order.status != "new":
            raise Rejected(f"order {self.order_id} is already placed")
        ctx.append(OrderPlaced(self.order_id, self.customer_id))
        return Receipt(self.order_id, "placed", 0)


@orders.command("add-item", "Adds qty of a product at a unit price (cents) to a placed order")
@dataclass
class AddItem:
    order_id: str
    sku: str
    qty: U32
    price: U64  # unit price in cents

    def run(self, ctx) -> Receipt:
        if self.qty == 0 or not self.sku:
            raise InvalidInput("an item needs a sku and a qty of at least 1")
        order = ctx.fold(Order, OrderRef(self.order_id))
        must_be_open(order)
        ctx.append(ItemAdded(self.order_id, self.sku, self.qty, self.price))
        return Receipt(self.order_id, "placed", order.total + self.qty * self.price)


@orders.command("confirm-order", "Confirms a placed order that has items")
@dataclass
class ConfirmOrder:
    order_id: str

    def run(self, ctx) -> Receipt:
        order = ctx.fold(Order, OrderRef(self.order_id))
        must_be_open(order)
        if not order.items:
            raise Rejected(f"order {self.order_id} has no items")
        ctx.append(OrderConfirmed(self.order_id))
        return Receipt(self.order_id, "confirmed", order.total)


@orders.command("cancel-order", "Cancels a placed or confirmed order")
@dataclass
class CancelOrder:
    order_id: str
    reason: str

    def run(self, ctx) -> Receipt:
        order = ctx.fold(Order, OrderRef(self.order_id))
        if order.status == "new":
            raise Rejected(f"order {self.order_id} is not placed")
        if order.status == "cancelled":
            raise Rejected(f"order {self.order_id} is cancelled")
        ctx.append(OrderCancelled(self.order_id, self.reason))
        return Receipt(self.order_id, "cancelled", order.total)


# --- Automations ---


@orders.automation(
    "cancel-when-out-of-stock",
    Query.of(StockReservationFailed),
    "Cancels an order whose stock could not be reserved",
)
def cancel_when_out_of_stock(event: Envelope):
    """When stock cannot be reserved for an order, cancel it."""
    failed = event.decode(StockReservationFailed)
    return [CommandCall.new("orders", "cancel-order", CancelOrder(failed.order_id, failed.reason))]
