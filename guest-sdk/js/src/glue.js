// The glue between a Slice and the WIT contract (`counterpoint:slice@0.1.0`, world
// `slice-world`: the `slice` and `read-models` exports), shared by the toolchains: each passes
// the store and read-model-state imports and their conventions for u64 (BigInt or number), an absent option (undefined
// or null) and a returned error.

import { BY_KIND, Error as SliceError } from "./errors.js";
import { Envelope } from "./events.js";
import { current } from "./slice.js";

function witQuery(query) {
  return { items: query.items.map((i) => ({ types: [...i.types], tags: [...i.tags] })) };
}

function envelope(e) {
  const ev = e.event;
  return new Envelope([BigInt(e.position[0]), BigInt(e.position[1])], {
    eventType: ev.eventType,
    tags: ev.tags,
    data: ev.data,
    metadata: ev.metadata,
  });
}

/** A host error (thrown with the WIT variant as `payload`) as the SDK's exception. */
function fromWit(e) {
  const payload = e?.payload ?? e;
  const Kind = payload && BY_KIND[payload.tag];
  return Kind ? new Kind(payload.val) : e;
}

/** `guarded(call)`: the SDK's exception as what the bindings turn into the `err` case. */
function guard(wit) {
  return (call) => {
    try {
      return call();
    } catch (e) {
      if (e instanceof SliceError) throw wit.error({ tag: e.kind, val: e.message });
      throw e;
    }
  };
}

const fields = (list) => list.map(([name, kind]) => ({ name, kind }));

/**
 * The `slice` export object: `describe`, `execute`, `tags`, `react` and the `Projection` resource.
 * @param {{ read: Function, append: Function, u64: (n: any) => any, none: any, error: (variant: {tag: string, val: string}) => any }} wit
 */
export function sliceExport(wit) {
  const { read: hostRead, append: hostAppend, none } = wit;
  const u64 = wit.u64;

  function witOptions(options) {
    return {
      after: options.after == null ? none : [u64(options.after[0]), u64(options.after[1])],
      limit: options.limit == null ? none : u64(options.limit),
      backwards: Boolean(options.backwards),
    };
  }

  const guarded = guard(wit);

  /** The host's store, bound to the current invocation's ReadAppender and tenant. */
  const host = {
    read(query, options) {
      let result;
      try {
        result = hostRead(witQuery(query), witOptions(options));
      } catch (e) {
        throw fromWit(e);
      }
      return { events: result.events.map(envelope), position: result.position };
    },
    append(events) {
      try {
        hostAppend(events.map((e) => ({ eventType: e.eventType, tags: e.tags, data: e.data, metadata: e.metadata })));
      } catch (e) {
        throw fromWit(e);
      }
    },
  };

  /** The WIT `projection` resource: a running projection, its state kept in the guest. */
  class Projection {
    #running;

    constructor(running) {
      this.#running = running;
    }

    static open(name, params) {
      return new Projection(guarded(() => current().open(name, params)));
    }

    source() {
      return [witQuery(this.#running.query), witOptions(this.#running.options)];
    }

    fold(events) {
      guarded(() => this.#running.fold(events.map(envelope)));
    }

    finish() {
      return guarded(() => this.#running.finish());
    }
  }

  const slice = {
    describe() {
      const d = current().describe();
      return {
        name: d.name,
        version: d.version,
        commands: d.commands.map((c) => ({ name: c.name, description: c.description, fields: fields(c.fields) })),
        projections: d.projections.map((p) => ({ name: p.name, description: p.description, params: fields(p.params) })),
        emits: d.emits,
        automations: d.automations.map((a) => ({ name: a.name, description: a.description, query: witQuery(a.query) })),
      };
    },
    execute(command, payload) {
      return guarded(() => current().execute(host, command, payload));
    },
    tags(eventType, data) {
      return guarded(() => current().tags(eventType, data));
    },
    react(automation, event) {
      const calls = guarded(() => current().react(automation, envelope(event)));
      return calls.map((c) => ({ slice: c.slice, command: c.command, payload: c.payload }));
    },
    Projection,
  };

  // The glue module calls this at its top level, which pre-initialization (Wizer) runs once, at
  // build time: warm the slice and this glue up so that their functions are compiled (and the
  // engine's caches filled) in the snapshot every instance starts from.
  {
    try {
      current().warm();
      for (let i = 0; i < 3; i++) {
        witQuery({ items: [{ types: ["A"], tags: ["k:v"] }] });
        witOptions({ after: [0n, 1n], limit: 2, backwards: true });
        witOptions({ after: null, limit: null, backwards: false });
        envelope({ position: [0n, 1n], event: { eventType: "A", tags: ["k:v"], data: new Uint8Array([0x80]), metadata: [] } });
        fields([["a", "string"]]);
        slice.describe();
        try {
          guarded(() => {
            throw new BY_KIND.rejected("warm-up");
          });
        } catch {
          // expected
        }
      }
    } catch {
      // No slice defined (yet): nothing to warm.
    }
  }

  return slice;
}

/**
 * The `read-models` export object: the slice's persistent read models, their state kept by the
 * host (the `read-model-state` import, bound to the current invocation's read model).
 * @param {{ state: { get: Function, scan: Function, put: Function, delete: Function }, none: any, error: (variant: {tag: string, val: string}) => any }} wit
 */
export function readModelsExport(wit) {
  const { state, none } = wit;
  const guarded = guard(wit);
  const host = (call) => {
    try {
      return call();
    } catch (e) {
      throw fromWit(e);
    }
  };
  const kv = {
    get: (key) => host(() => state.get(key)) ?? null,
    scan: (prefix, after, limit) => host(() => state.scan(prefix, after ?? none, limit)),
    put: (key, value) => host(() => state.put(key, value)),
    delete: (key) => host(() => state.delete(key)),
  };
  return {
    readModels() {
      return current()
        .describe()
        .readModels.map((r) => ({ name: r.name, description: r.description, query: witQuery(r.query), params: fields(r.params) }));
    },
    update(name, events) {
      guarded(() => current().update(kv, name, events.map(envelope)));
    },
    answer(name, params) {
      return guarded(() => current().answer(kv, name, params));
    },
  };
}
