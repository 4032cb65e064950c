"""Counterpoint's Python SDK for feature slices: events, queries, commands, projections and
automations, compiled to a WebAssembly component with componentize-py.

    from dataclasses import dataclass
    from counterpoint import Slice, Query, Rejected, tag

    orders = Slice("orders", "0.1.0")

    @orders.event("OrderPlaced")
    @dataclass
    class OrderPlaced:
        order_id: str
        def tags(self):
            return [tag("order_id", self.order_id)]

    @orders.command("place-order", "Places an order")
    @dataclass
    class PlaceOrder:
        order_id: str
        def run(self, ctx):
            if ctx.read(Query.of(OrderPlaced).tag(tag("order_id", self.order_id))):
                raise Rejected("order already placed")
            ctx.append(OrderPlaced(self.order_id))

A persistent read model registers with `@orders.read_model(name, source_query, description,
params=...)` on a class with static `apply(state, event)` and `query(state, params)`; `state`
is a `State` (string keys, MessagePack values) the host keeps between invocations.

Payloads are MessagePack with named fields (the same bytes the Rust SDK writes), so slices in
any language share one log. The component's entry module ends with
`from counterpoint.component import ReadModels, Slice`.
"""

from .codec import I64, U32, U64, Range, decode_as, encode
from .definition import CommandCall, Context, MemoryState, Slice, State, event
from .errors import Conflict, Error, InvalidInput, NotFound, Rejected, StoreError
from .events import Envelope, Events, RawEvent, tag
from .query import Item, Position, Query, ReadOptions, position_number, position_of

__all__ = [
    "Slice", "event", "Context", "CommandCall", "State", "MemoryState",
    "Error", "Rejected", "InvalidInput", "NotFound", "Conflict", "StoreError",
    "Envelope", "Events", "RawEvent", "tag",
    "Item", "Query", "ReadOptions", "Position", "position_number", "position_of",
    "U32", "U64", "I64", "Range", "encode", "decode_as",
]
