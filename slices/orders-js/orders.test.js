// The orders slice's logic, natively:  node --import ../../guest-sdk/js/register.js --test
import assert from "node:assert/strict";
import { test } from "node:test";

import { Rejected } from "@counterpoint/slice-sdk";
import { TestStore } from "@counterpoint/slice-sdk/testing";

import { orders } from "./orders.js";

test("an order is placed, filled and confirmed", () => {
  const store = new TestStore(orders);
  store.run("place-order", { order_id: "o-1", customer_id: "c-1" });
  store.run("add-item", { order_id: "o-1", sku: "apple", qty: 3, price: 50 });
  assert.equal(store.run("add-item", { order_id: "o-1", sku: "pear", qty: 1, price: 120 }).total, 270);
  assert.deepEqual(store.run("confirm-order", { order_id: "o-1" }), { order_id: "o-1", status: "confirmed", total: 270 });
  const order = store.project("order-summary", { order_id: "o-1" });
  assert.deepEqual(order.items, [{ sku: "apple", qty: 3, price: 50 }, { sku: "pear", qty: 1, price: 120 }]);
  assert.deepEqual(store.events[0].tags, ["customer_id:c-1", "order_id:o-1"]);
  assert.equal(store.events[0].metadata("command"), "place-order");
});

test("business rules reject and append nothing", () => {
  const store = new TestStore(orders);
  assert.throws(() => store.run("add-item", { order_id: "o-1", sku: "apple", qty: 1, price: 1 }), /order o-1 is not placed/);
  store.run("place-order", { order_id: "o-1", customer_id: "c-1" });
  assert.throws(() => store.run("place-order", { order_id: "o-1", customer_id: "c-2" }), Rejected);
  assert.throws(() => store.run("confirm-order", { order_id: "o-1" }), /has no items/);
  store.run("cancel-order", { order_id: "o-1", reason: "changed my mind" });
  assert.throws(() => store.run("cancel-order", { order_id: "o-1", reason: "again" }), /is cancelled/);
  assert.equal(store.events.length, 2);
});

test("customer-orders keeps the last N, oldest first", () => {
  const store = new TestStore(orders);
  for (const id of ["o-1", "o-2", "o-3"]) store.run("place-order", { order_id: id, customer_id: "c-1" });
  assert.deepEqual(store.project("customer-orders", { customer_id: "c-1" }).orders, ["o-1", "o-2", "o-3"]);
  assert.deepEqual(store.project("customer-orders", { customer_id: "c-1", last: 2 }).orders, ["o-2", "o-3"]);
});

test("orders-by-customer follows the log", () => {
  const store = new TestStore(orders);
  store.run("place-order", { order_id: "o-1", customer_id: "c-1" });
  store.run("place-order", { order_id: "o-2", customer_id: "c-2" });
  assert.deepEqual(store.readModel("orders-by-customer", { customer_id: "c-1" }), { customer_id: "c-1", orders: ["o-1"] });
  store.run("place-order", { order_id: "o-3", customer_id: "c-1" });
  assert.deepEqual(store.readModel("orders-by-customer", { customer_id: "c-1" }).orders, ["o-1", "o-3"]);
  assert.deepEqual(store.readModel("orders-by-customer", { customer_id: "c-9" }).orders, []);
});
