// An in-memory store with the host's read semantics: for native tests and for warming up.

import { Envelope } from "./events.js";

export class MemoryStore {
  constructor() {
    this.events = [];
  }

  head() {
    return this.events.length ? this.events[this.events.length - 1].position : [0n, 0n];
  }

  read(query, options) {
    const after = options.after == null ? null : (BigInt(options.after[0]) << 64n) | BigInt(options.after[1]);
    let events = this.events.filter(
      (e) => (after === null || e.position[1] > after) && query.matches(e.eventType, e.tags),
    );
    if (options.backwards) events.reverse();
    const cut = options.limit != null && events.length > Number(options.limit);
    if (options.limit != null) events = events.slice(0, Number(options.limit));
    const position = cut && !options.backwards ? events[events.length - 1].position : this.head();
    return { events, position };
  }

  append(events) {
    for (const e of events) {
      const n = BigInt(this.events.length + 1);
      this.events.push(new Envelope([0n, n], { eventType: e.eventType, tags: [...e.tags], data: e.data, metadata: [...e.metadata] }));
    }
  }
}

/** A read model's raw key-value state in memory (for native tests and warming up): bytes to
 * bytes, with the host's `read-model-state` semantics (`scan` in key order). */
export class MemoryState {
  constructor() {
    this.entries = new Map(); // key as a binary string (sorts as its bytes) -> [key, value]
  }

  get(key) {
    const entry = this.entries.get(binary(key));
    return entry ? entry[1] : null;
  }

  scan(prefix, after, limit) {
    const p = binary(prefix);
    const a = after == null ? null : binary(after);
    return [...this.entries.keys()]
      .filter((k) => k.startsWith(p) && (a === null || k > a))
      .sort()
      .slice(0, Number(limit))
      .map((k) => this.entries.get(k));
  }

  put(key, value) {
    this.entries.set(binary(key), [Uint8Array.from(key), Uint8Array.from(value)]);
  }

  delete(key) {
    this.entries.delete(binary(key));
  }
}

const binary = (bytes) => String.fromCharCode(...bytes);
