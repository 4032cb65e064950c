import assert from "node:assert/strict";
import { test } from "node:test";

import { decode, encode, InvalidInput, MemoryState, NotFound, Query, ReadOptions, Rejected, Slice, State, t, tag } from "../index.js";
import { readModelsExport } from "../src/glue.js";
import { TestStore } from "../testing.js";

const shop = new Slice("shop", "0.1.0");
const Bought = shop.event("Bought", {
  fields: { item: t.string, qty: t.u32 },
  tags: (e) => [tag("item", e.item), tag("item", e.item), tag("a", "1")],
});
shop.command("buy", {
  input: { item: t.string, qty: t.u32, note: t.optional(t.string) },
  run({ item, qty }, ctx) {
    if (ctx.read(Query.of(Bought).tag(tag("item", item))).length) throw new Rejected(`${item} was bought`);
    ctx.append(Bought, { item, qty });
    return { item, qty };
  },
});
shop.projection("last-bought", {
  params: { last: t.optional(t.u64) },
  init: () => [],
  source: () => Query.of(Bought),
  options: ({ last }) => (last === null ? new ReadOptions() : ReadOptions.last(last)),
  apply: (items, event) => [...items, event.decode(Bought).item],
});

test("payloads are MessagePack maps with named fields, in field order", () => {
  const store = new TestStore(shop);
  assert.deepEqual(store.run("buy", { item: "pen", qty: 2, extra: true }), { item: "pen", qty: 2 });
  const [event] = store.events;
  assert.equal(event.eventType, "Bought");
  assert.deepEqual(event.tags, ["a:1", "item:pen"], "sorted, deduplicated");
  assert.equal(event.metadata("command"), "buy");
  // fixmap 2, "item": "pen", "qty": 2 (what rmp-serde writes)
  assert.deepEqual([...event.data], [0x82, 0xa4, ...Buffer.from("item"), 0xa3, ...Buffer.from("pen"), 0xa3, ...Buffer.from("qty"), 0x02]);
});

test("inputs are checked with the Rust SDK's words", () => {
  const store = new TestStore(shop);
  const error = (input) => {
    try {
      store.execute("buy", input);
    } catch (e) {
      return [e.constructor.name, e.message];
    }
    return null;
  };
  assert.deepEqual(error({ item: "pen", qty: "two" }), ["InvalidInput", "field `qty`: expected integer, got string"]);
  assert.deepEqual(error({ item: 5, qty: 1 }), ["InvalidInput", "field `item`: invalid type: integer `5`, expected a string"]);
  assert.deepEqual(error({ item: "pen", qty: -1 }), ["InvalidInput", "field `qty`: invalid value: integer `-1`, expected u32"]);
  assert.deepEqual(error({ item: "pen" }), ["InvalidInput", "missing field `qty`"]);
  assert.throws(() => store.execute("sell", {}), NotFound);
  assert.throws(() => shop.execute(store, "buy", new Uint8Array([0xc1])), InvalidInput);
  assert.equal(store.events.length, 0);
});

test("a rejected command appends nothing; the last N read backwards", () => {
  const store = new TestStore(shop);
  for (const item of ["a", "b", "c"]) store.run("buy", { item, qty: 1 });
  assert.throws(() => store.run("buy", { item: "a", qty: 1 }), Rejected);
  assert.equal(store.events.length, 3);
  assert.deepEqual(store.project("last-bought", {}), ["a", "b", "c"]);
  assert.deepEqual(store.project("last-bought", { last: 2 }), ["c", "b"]);
  assert.deepEqual(decode(encode({ a: null })), { a: null });
});

test("queries: items are OR'ed, tags narrow every item", () => {
  const q = Query.of(Bought).orOf("Sold").tag("item:pen").or(Query.tagged("x:1"));
  assert.deepEqual(JSON.parse(JSON.stringify(q.items)), [
    { types: ["Bought", "Sold"], tags: ["item:pen"] },
    { types: [], tags: ["x:1"] },
  ]);
  assert.ok(q.matches("Sold", ["item:pen"]) && q.matches("Other", ["x:1"]) && !q.matches("Bought", []));
  assert.deepEqual(Query.all().tag("t:1").items.map((i) => i.tags), [["t:1"]]);
  assert.ok(Query.all().matches("Anything", []));
});

test("describe lists fields with kinds", () => {
  const d = shop.describe();
  assert.deepEqual(d.commands[0].fields, [["item", "string"], ["qty", "integer"], ["note", "string?"]]);
  assert.deepEqual(d.projections[0].params, [["last", "integer?"]]);
  assert.deepEqual(d.emits, ["Bought"]);
});

test("a slice without read models exports none: update and answer are not-found", () => {
  const models = readModelsExport({ error: (variant) => variant });
  assert.deepEqual(models.readModels(), []);
  const notFound = { tag: "not-found", val: "this slice has no read models" };
  assert.throws(() => models.update("stock", []), notFound);
  assert.throws(() => models.answer("stock", new Uint8Array([0x80])), notFound);
});

test("a read model folds events into its State and answers from it; the export wires it", () => {
  const stock = new Slice("stock", "0.1.0");
  const Received = stock.event("Received", { fields: { sku: t.string, qty: t.u32 }, tags: (e) => [tag("sku", e.sku)] });
  stock.command("receive", {
    input: { sku: t.string, qty: t.u32 },
    run(input, ctx) {
      ctx.append(Received, input);
    },
  });
  stock.readModel("levels", {
    description: "Stock per sku",
    source: Query.of(Received),
    params: { prefix: t.optional(t.string) },
    apply(state, event) {
      const { sku, qty } = event.decode(Received);
      state.update(sku, (n) => n + qty, 0);
    },
    query: (state, { prefix }) => Object.fromEntries(state.scan(prefix ?? "")),
  });
  assert.deepEqual(stock.describe().readModels, [
    { name: "levels", description: "Stock per sku", query: Query.of(Received), params: [["prefix", "string?"]] },
  ]);

  const store = new TestStore(stock);
  store.run("receive", { sku: "apple", qty: 2 });
  store.run("receive", { sku: "pear", qty: 1 });
  assert.deepEqual(store.readModel("levels"), { apple: 2, pear: 1 });
  store.run("receive", { sku: "apple", qty: 3 });
  assert.deepEqual(store.readModel("levels", { prefix: "a" }), { apple: 5 });
  assert.throws(() => store.readModel("nope"), /unknown read model `nope` \(this slice has: levels\)/);
  assert.throws(() => store.readModel("levels", { prefix: 1 }), InvalidInput);

  // State over raw bytes: UTF-8 keys, MessagePack values, scanned in pages, deleted on null.
  const kv = new MemoryState();
  const state = new State(kv);
  for (let i = 0; i < 300; i++) state.put(`k:${String(i).padStart(3, "0")}`, { i });
  state.put("é", [1]);
  assert.deepEqual(kv.get(new TextEncoder().encode("é")), encode([1]));
  assert.equal([...state.scan("k:")].length, 300);
  assert.deepEqual([...state.scan("k:29")].map(([k]) => k), ["k:290", "k:291", "k:292", "k:293", "k:294", "k:295", "k:296", "k:297", "k:298", "k:299"]);
  assert.equal(state.update("é", () => null), null);
  assert.equal(state.get("é", "gone"), "gone");

  // The export: host state as the `read-model-state` import, host errors as the SDK's.
  const hostState = new MemoryState();
  const models = readModelsExport({ state: hostState, none: null, error: (variant) => variant });
  assert.deepEqual(models.readModels(), [
    { name: "levels", description: "Stock per sku", query: { items: [{ types: ["Received"], tags: [] }] }, params: [{ name: "prefix", kind: "string?" }] },
  ]);
  const event = (n, data) => ({ position: [0n, BigInt(n)], event: { eventType: "Received", tags: [], data: encode(data), metadata: [] } });
  models.update("levels", [event(1, { sku: "fig", qty: 4 }), event(2, { sku: "fig", qty: 1 })]);
  assert.deepEqual(decode(models.answer("levels", new Uint8Array())), { fig: 5 });
  assert.throws(() => models.answer("nope", new Uint8Array()), { tag: "not-found", val: "unknown read model `nope` (this slice has: levels)" });
  const failing = readModelsExport({
    state: {
      scan: () => {
        throw { tag: "store", val: "disk on fire" };
      },
    },
    none: null,
    error: (variant) => variant,
  });
  assert.throws(() => failing.answer("levels", encode({ prefix: null })), { tag: "store", val: "disk on fire" });
});
