"""The orders slice's logic, natively (see guest-sdk/python/test.sh)."""

import unittest

from counterpoint import Rejected
from counterpoint.testing import TestStore

from orders import AddItem, CancelOrder, ConfirmOrder, PlaceOrder, orders


class OrdersTest(unittest.TestCase):
    def test_an_order_is_placed_filled_and_confirmed(self):
        store = TestStore(orders)
        store.run(PlaceOrder("o-1", "c-1"))
        store.run(AddItem("o-1", "apple", 3, 50))
        self.assertEqual(store.run(AddItem("o-1", "pear", 1, 120)).total, 270)
        receipt = store.run(ConfirmOrder("o-1"))
        self.assertEqual((receipt.status, receipt.total), ("confirmed", 270))
        order = store.project("order-summary", {"order_id": "o-1"})
        self.assertEqual(order["items"], [{"sku": "apple", "qty": 3, "price": 50}, {"sku": "pear", "qty": 1, "price": 120}])
        self.assertEqual(store.events[0].tags, ["customer_id:c-1", "order_id:o-1"])
        self.assertEqual(store.events[0].metadata("command"), "place-order")

    def test_business_rules_reject_and_append_nothing(self):
        store = TestStore(orders)
        with self.assertRaisesRegex(Rejected, "order o-1 is not placed"):
            store.run(AddItem("o-1", "apple", 1, 1))
        store.run(PlaceOrder("o-1", "c-1"))
        with self.assertRaisesRegex(Rejected, "already placed"):
            store.run(PlaceOrder("o-1", "c-2"))
        with self.assertRaisesRegex(Rejected, "has no items"):
            store.run(ConfirmOrder("o-1"))
        store.run(CancelOrder("o-1", "changed my mind"))
        with self.assertRaisesRegex(Rejected, "is cancelled"):
            store.run(CancelOrder("o-1", "again"))
        self.assertEqual(len(store.events), 2)

    def test_customer_orders_keeps_the_last_n_oldest_first(self):
        store = TestStore(orders)
        for order_id in ("o-1", "o-2", "o-3"):
            store.run(PlaceOrder(order_id, "c-1"))
        self.assertEqual(store.project("customer-orders", {"customer_id": "c-1"})["orders"], ["o-1", "o-2", "o-3"])
        self.assertEqual(store.project("customer-orders", {"customer_id": "c-1", "last": 2})["orders"], ["o-2", "o-3"])

    def test_orders_by_customer_follows_the_log(self):
        store = TestStore(orders)
        store.run(PlaceOrder("o-1", "c-1"))
        store.run(PlaceOrder("o-2", "c-2"))
        self.assertEqual(store.read_model("orders-by-customer", {"customer_id": "c-1"}), {"customer_id": "c-1", "orders": ["o-1"]})
        store.run(PlaceOrder("o-3", "c-1"))
        self.assertEqual(store.read_model("orders-by-customer", {"customer_id": "c-1"})["orders"], ["o-1", "o-3"])
        self.assertEqual(store.read_model("orders-by-customer", {"customer_id": "c-9"})["orders"], [])


if __name__ == "__main__":
    unittest.main()
