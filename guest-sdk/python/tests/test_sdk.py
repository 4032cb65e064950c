"""The Python SDK natively: payload bytes, input checks, queries, read semantics."""

import unittest
from dataclasses import dataclass
from typing import Optional

from counterpoint import U32, U64, InvalidInput, NotFound, Query, ReadOptions, Rejected, Slice, decode_as, encode, tag
from counterpoint.testing import TestStore

shop = Slice("shop", "0.1.0")


@shop.event("Bought")
@dataclass
class Bought:
    item: str
    qty: U32

    def tags(self):
        return [tag("item", self.item), tag("item", self.item), tag("a", 1)]


@shop.command("buy")
@dataclass
class Buy:
    item: str
    qty: U32
    note: Optional[str] = None

    def run(self, ctx):
        if ctx.read(Query.of(Bought).tag(tag("item", self.item))):
            raise Rejected(f"{self.item} was bought")
        ctx.append(Bought(self.item, self.qty))
        return {"item": self.item, "qty": self.qty}


@dataclass
class Last:
    last: Optional[U64] = None


@shop.projection("last-bought", params=Last)
class LastBought:
    def __init__(self, params):
        self.items = []

    @staticmethod
    def source(params):
        return Query.of(Bought)

    @staticmethod
    def options(params):
        return ReadOptions() if params.last is None else ReadOptions.last(params.last)

    def apply(self, event):
        self.items.append(event.decode(Bought).item)

    def output(self):
        return self.items


@shop.read_model("bought-by-item", Query.of(Bought), "Quantities bought per item")
class BoughtByItem:
    @staticmethod
    def apply(state, event):
        bought = event.decode(Bought)
        state.update(f"item/{bought.item}", lambda qty: qty + bought.qty, default=0)
        state.put("last", bought.item)

    @staticmethod
    def query(state, params):
        return {key[len("item/"):]: qty for key, qty in state.scan("item/")}


class SdkTest(unittest.TestCase):
    def test_payloads_are_msgpack_maps_with_named_fields_in_field_order(self):
        store = TestStore(shop)
        self.assertEqual(store.run(Buy("pen", 2)), {"item": "pen", "qty": 2})
        event = store.events[0]
        self.assertEqual(event.event_type, "Bought")
        self.assertEqual(event.tags, ["a:1", "item:pen"], "sorted, deduplicated")
        self.assertEqual(event.metadata("command"), "buy")
        # fixmap 2, "item": "pen", "qty": 2 (what rmp-serde writes)
        self.assertEqual(event.data, b"\x82\xa4item\xa3pen\xa3qty\x02")
        self.assertEqual(event.decode(Bought), Bought("pen", 2))

    def test_inputs_are_checked_with_the_rust_sdks_words(self):
        store = TestStore(shop)

        def error(payload):
            with self.assertRaises(InvalidInput) as caught:
                store.execute("buy", payload)
            return caught.exception.message

        self.assertEqual(error({"item": "pen", "qty": "two"}), "field `qty`: expected integer, got string")
        self.assertEqual(error({"item": 5, "qty": 1}), "field `item`: invalid type: integer `5`, expected a string")
        self.assertEqual(error({"item": "pen", "qty": -1}), "field `qty`: invalid value: integer `-1`, expected u32")
        self.assertEqual(error({"item": "pen"}), "missing field `qty`")
        with self.assertRaises(NotFound):
            store.execute("sell", {})
        with self.assertRaises(InvalidInput):
            shop.execute(store, "buy", b"\xc1")
        self.assertEqual(store.events, [])
        self.assertEqual(decode_as(Last, encode({"last": None})), Last(None))

    def test_a_rejected_command_appends_nothing_and_the_last_n_read_backwards(self):
        store = TestStore(shop)
        for item in "abc":
            store.run(Buy(item, 1))
        with self.assertRaises(Rejected):
            store.run(Buy("a", 1))
        self.assertEqual(len(store.events), 3)
        self.assertEqual(store.project("last-bought"), ["a", "b", "c"])
        self.assertEqual(store.project("last-bought", {"last": 2}), ["c", "b"])

    def test_queries_or_items_and_tags_narrow_every_item(self):
        q = Query.of(Bought).or_of("Sold").tag("item:pen").or_(Query.tagged("x:1"))
        self.assertEqual([(i.types, i.tags) for i in q.items], [(["Bought", "Sold"], ["item:pen"]), ([], ["x:1"])])
        self.assertTrue(q.matches("Sold", ["item:pen"]) and q.matches("Other", ["x:1"]))
        self.assertFalse(q.matches("Bought", []))
        self.assertEqual(Query.all().tag("t:1").items[0].tags, ["t:1"])
        self.assertTrue(Query.all().matches("Anything", []))

    def test_describe_lists_fields_with_kinds(self):
        d = shop.describe()
        self.assertEqual(d.commands[0][2], [("item", "string"), ("qty", "integer"), ("note", "string?")])
        self.assertEqual(d.projections[0][2], [("last", "integer?")])
        self.assertEqual(d.emits, ["Bought"])
        self.assertEqual([(n, desc, f) for n, desc, _, f in d.read_models], [("bought-by-item", "Quantities bought per item", [])])

    def test_read_models_fold_new_events_into_a_kept_state(self):
        from counterpoint import MemoryState, State

        store = TestStore(shop)
        store.execute("buy", {"item": "pen", "qty": 2})
        self.assertEqual(store.read_model("bought-by-item"), {"pen": 2})
        store.execute("buy", {"item": "ink", "qty": 1})
        self.assertEqual(store.read_model("bought-by-item"), {"ink": 1, "pen": 2})
        with self.assertRaisesRegex(NotFound, "unknown read model `nope`"):
            store.read_model("nope")
        State.SCAN_PAGE, page = 2, State.SCAN_PAGE
        try:
            state = State(MemoryState())
            for i in range(5):
                state.put(f"k{i}", {"n": i})
            state.delete("k1")
            self.assertEqual([k for k, _ in state.scan("k")], ["k0", "k2", "k3", "k4"])
            self.assertEqual(state.update("k0", lambda v: None), None)
            self.assertIsNone(state.get("k0"))
        finally:
            State.SCAN_PAGE = page


if __name__ == "__main__":
    unittest.main()
