// A slice: its events, commands, projections, automations and read models, registered by name,
// and the name-dispatched exports the host calls.

import { Mismatch, decode, decodeAs, encode, fieldsOf, sampleOf } from "./codec.js";
import { InvalidInput, NotFound, StoreError, unknown } from "./errors.js";
import { Events, rawEvent, tagsOf } from "./events.js";
import { MemoryState, MemoryStore } from "./memory.js";
import { Query, ReadOptions } from "./query.js";

/** A command an automation asks the host to run; `slice` may name another slice of the tenant. */
export class CommandCall {
  constructor(slice, command, payload) {
    this.slice = slice;
    this.command = command;
    this.payload = encode(payload ?? {});
  }
}

/** A command's input or a projection's params. No payload (empty or nil) is an empty map. */
function decodeInput(fields, bytes) {
  if (!fields) return {};
  if (!bytes || bytes.length === 0 || (bytes.length === 1 && bytes[0] === 0xc0)) bytes = new Uint8Array([0x80]);
  try {
    return decodeAs(fields, bytes);
  } catch (e) {
    if (e instanceof Mismatch) throw new InvalidInput(e.message);
    throw e;
  }
}

/** A command's view of the tenant's log during one invocation. */
export class Context {
  #store;
  #command;
  #pending = [];

  constructor(store, command) {
    this.#store = store;
    this.#command = command;
  }

  /** Reads the events matching `query` (a Query or an Item), oldest first unless `options`
   * say otherwise. The read becomes part of the command's consistency boundary. */
  read(query, options = new ReadOptions()) {
    if (!(query instanceof Query)) query = new Query([query]);
    const { events, position } = this.#store.read(query, options);
    return Events.from(events, position);
  }

  /** Reads a projection's source and folds it: the decision model shared with a query
   * (the projection's state, before `output`). */
  fold(projection, params) {
    let state = projection.init(params);
    for (const event of this.read(projection.source(params), projection.options(params))) {
      state = projection.apply(state, event) ?? state;
    }
    return state;
  }

  /** Queues an event of `definition` with `data`; all are appended at once when the command succeeds. */
  append(definition, data) {
    const raw = rawEvent(definition, data);
    raw.metadata.push(["command", this.#command]);
    this.#pending.push(raw);
  }

  _commit() {
    if (this.#pending.length > 0) this.#store.append(this.#pending);
  }
}

/** A projection being computed, behind the WIT `projection` resource. */
export class Running {
  #projection;
  #state;
  #done = false;

  constructor(projection, params) {
    this.#projection = projection;
    this.query = projection.source(params);
    this.options = projection.options(params);
    this.#state = projection.init(params);
  }

  fold(events) {
    if (this.#done) throw new InvalidInput("the projection is already finished");
    for (const event of events) this.#state = this.#projection.apply(this.#state, event) ?? this.#state;
  }

  finish() {
    if (this.#done) throw new InvalidInput("the projection is already finished");
    this.#done = true;
    const output = this.#projection.output(this.#state);
    try {
      return encode(output);
    } catch (e) {
      throw new StoreError(`cannot encode the output of ${this.#projection.name}: ${e.message}`);
    }
  }
}

const utf8 = (text) => new TextEncoder().encode(text);
const bytes = (value) => (value instanceof Uint8Array ? value : Uint8Array.from(value));

/** A read model's persistent key-value state: string keys (UTF-8), values MessagePack. `kv` is
 * the raw store over bytes: `get(key)` (bytes or null), `scan(prefix, after, limit)` ([key, value]
 * pairs), `put(key, value)` and `delete(key)` (the host's `read-model-state`, or a MemoryState). */
export class State {
  static SCAN_PAGE = 256;
  #kv;

  constructor(kv) {
    this.#kv = kv;
  }

  /** The value at `key`, decoded, or `fallback`. */
  get(key, fallback = null) {
    const raw = this.#kv.get(utf8(key));
    return raw == null ? fallback : decode(bytes(raw));
  }

  put(key, value) {
    this.#kv.put(utf8(key), encode(value));
  }

  delete(key) {
    this.#kv.delete(utf8(key));
  }

  /** Puts `change(current value or fallback)` at `key`; deletes the key if it returns null or
   * undefined. Returns the new value. */
  update(key, change, fallback = null) {
    const value = change(this.get(key, fallback));
    if (value == null) this.delete(key);
    else this.put(key, value);
    return value;
  }

  /** [key, value] of every entry whose key starts with `prefix`, in key order. */
  *scan(prefix = "") {
    const decoder = new TextDecoder();
    let after = null;
    for (;;) {
      const page = this.#kv.scan(utf8(prefix), after, State.SCAN_PAGE);
      for (const [key, raw] of page) yield [decoder.decode(bytes(key)), decode(bytes(raw))];
      if (page.length < State.SCAN_PAGE) return;
      after = page[page.length - 1][0];
    }
  }
}

/** An event type a slice reads but does not append (another slice's): the fields it cares
 * about. `Slice.event` is the same, and lists the type among those the slice emits. */
export function defineEvent(type, { fields = {}, tags = () => [] } = {}) {
  return { type, fields, tags };
}

let currentSlice = null;

/** The slice this component exports (the one `new Slice(...)` made). */
export function current() {
  if (!currentSlice) throw new globalThis.Error("no Slice was defined: create one in the entry module");
  return currentSlice;
}

export class Slice {
  constructor(name, version) {
    this.name = name;
    this.version = version;
    this.events = new Map();
    this.commands = new Map();
    this.projections = new Map();
    this.automations = new Map();
    this.readModels = new Map();
    currentSlice = this;
  }

  /** An event type this slice appends: `fields` (name: t.type, in payload order) and `tags(data)`. */
  event(type, { fields, tags }) {
    const definition = defineEvent(type, { fields, tags });
    this.events.set(type, definition);
    return definition;
  }

  /** A command: `input` fields and `run(input, ctx)`, which returns the output. */
  command(name, { description = "", input = {}, run }) {
    const definition = { name, description, input, run };
    this.commands.set(name, definition);
    return definition;
  }

  /** A projection: `params` fields, `init(params)`, `source(params)` (a Query), optionally
   * `options(params)` (ReadOptions), `apply(state, event)` (returns the new state, or mutates
   * it and returns nothing) and `output(state)`. Also a command's decision model: `ctx.fold`. */
  projection(name, { description = "", params = {}, init, source, options = () => new ReadOptions(), apply, output = (s) => s }) {
    const definition = { name, description, params, init, source, options, apply, output };
    this.projections.set(name, definition);
    return definition;
  }

  /** An automation: `react(event)` returns the CommandCalls to run for each event matching `query`. */
  automation(name, { description = "", query, react }) {
    const definition = { name, description, query, react };
    this.automations.set(name, definition);
    return definition;
  }

  /** A persistent read model: `source` (a Query), `params` fields, `apply(state, event)` and
   * `query(state, params)`. The host follows the log for `source` and calls `apply` exactly once
   * per event, with a State kept between invocations; `query` answers from that state, its
   * result encoded as MessagePack. */
  readModel(name, { description = "", source, params = {}, apply, query }) {
    const definition = { name, description, source: source instanceof Query ? source : new Query([source]), params, apply, query };
    this.readModels.set(name, definition);
    return definition;
  }

  // --- the exports, in plain JavaScript (the component glue converts to and from WIT) ---

  describe() {
    return {
      name: this.name,
      version: this.version,
      commands: [...this.commands.values()].map((c) => ({ name: c.name, description: c.description, fields: fieldsOf(c.input) })),
      projections: [...this.projections.values()].map((p) => ({ name: p.name, description: p.description, params: fieldsOf(p.params) })),
      emits: [...this.events.keys()],
      automations: [...this.automations.values()].map((a) => ({ name: a.name, description: a.description, query: a.query })),
      readModels: [...this.readModels.values()].map((r) => ({ name: r.name, description: r.description, query: r.source, params: fieldsOf(r.params) })),
    };
  }

  /** The read model `name`, or NotFound. */
  readModelNamed(name) {
    const definition = this.readModels.get(name);
    if (!definition) {
      if (this.readModels.size === 0) throw new NotFound("this slice has no read models");
      throw unknown("read model", name, this.readModels.keys());
    }
    return definition;
  }

  /** Folds a batch of events (Envelopes, in log order) into read model `name`'s state. */
  update(kv, name, events) {
    const definition = this.readModelNamed(name);
    const state = new State(kv);
    for (const event of events) definition.apply(state, event);
  }

  /** Answers read model `name`'s query from its state; MessagePack in and out. */
  answer(kv, name, params) {
    const definition = this.readModelNamed(name);
    const output = definition.query(new State(kv), decodeInput(definition.params, params));
    try {
      return encode(output ?? null);
    } catch (e) {
      throw new StoreError(`cannot encode the answer of ${name}: ${e.message}`);
    }
  }

  execute(store, command, payload) {
    const definition = this.commands.get(command);
    if (!definition) throw unknown("command", command, this.commands.keys());
    return this.invoke(store, definition, decodeInput(definition.input, payload), true);
  }

  /** Runs a decoded command against `store`: its reads, then its one append. */
  invoke(store, definition, input, encodeOutput = false) {
    const ctx = new Context(store, definition.name);
    let output = definition.run(input, ctx);
    if (encodeOutput) {
      // Encoded before appending, so that failing to encode it appends nothing.
      try {
        output = encode(output ?? null);
      } catch (e) {
        throw new StoreError(`cannot encode the output of ${definition.name}: ${e.message}`);
      }
    }
    ctx._commit();
    return output;
  }

  tags(eventType, data) {
    const definition = this.events.get(eventType);
    if (!definition) throw unknown("event type", eventType, this.events.keys());
    return tagsOf(definition, data);
  }

  open(projection, params) {
    const definition = this.projections.get(projection);
    if (!definition) throw unknown("projection", projection, this.projections.keys());
    return new Running(definition, decodeInput(definition.params, params));
  }

  /** Runs every command, projection and event of the slice a few times on sample values
   * against an in-memory store, errors ignored. Called while the component is pre-initialized,
   * so that the engine's lazily compiled functions are compiled (and its caches warm) in the
   * snapshot every instance starts from, instead of in every invocation. */
  warm(rounds = 3) {
    const attempt = (f) => {
      try {
        f();
      } catch {
        // Sample values may break business rules: only the code paths matter.
      }
    };
    const log = new MemoryStore();
    for (let round = 0; round < rounds; round++) {
      for (const e of this.events.values()) {
        attempt(() => {
          const raw = rawEvent(e, sampleOf(e.fields));
          this.tags(e.type, raw.data);
          log.append([raw]);
        });
      }
      for (const c of this.commands.values()) {
        attempt(() => this.execute(new MemoryStore(), c.name, encode(sampleOf(c.input))));
        attempt(() => this.execute(log, c.name, encode(sampleOf(c.input))));
        attempt(() => this.execute(log, c.name, encode({})));
      }
      for (const p of this.projections.values()) {
        attempt(() => {
          const running = this.open(p.name, encode(sampleOf(p.params)));
          running.fold(log.read(running.query, running.options).events);
          running.finish();
        });
      }
      for (const r of this.readModels.values()) {
        attempt(() => {
          const kv = new MemoryState();
          this.update(kv, r.name, log.read(r.source, new ReadOptions()).events);
          this.answer(kv, r.name, encode(sampleOf(r.params)));
        });
      }
      attempt(() => this.execute(log, "", new Uint8Array()));
      attempt(() => this.describe());
    }
  }

  react(automation, event) {
    const definition = this.automations.get(automation);
    if (!definition) throw unknown("automation", automation, this.automations.keys());
    return [...definition.react(event)];
  }
}
