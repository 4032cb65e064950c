// The {name} slice's logic, natively:  node --import {sdk}/register.js --test
import assert from "node:assert/strict";
import { test } from "node:test";

import { Rejected } from "@counterpoint/slice-sdk";
import { TestStore } from "@counterpoint/slice-sdk/testing";

import { slice } from "./slice.js";

test("greets once", () => {
  const store = new TestStore(slice);
  assert.equal(store.run("greet", { name: "Ada" }), "Hello, Ada!");
  assert.throws(() => store.run("greet", { name: "Ada" }), Rejected);
  assert.equal(store.events.length, 1);
  assert.equal(store.project("greetings"), 1);
});
