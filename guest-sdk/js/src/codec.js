// MessagePack with named fields, both ways, and the field types that check inputs:
// "field `qty`: expected integer, got string", the same words as the Rust SDK.

import "./textcoding.js";
import { encode as pack, decode as unpack } from "@msgpack/msgpack";

class Mismatch extends globalThis.Error {
  constructor(message, expected = null) {
    super(message);
    this.expected = expected; // the kind expected, for messages of the form "expected K, got G"
  }
}

/** The kind of a decoded value, in the words `describe` uses. */
export function kindOf(value) {
  if (value === null || value === undefined) return "null";
  if (typeof value === "boolean") return "bool";
  if (typeof value === "bigint") return "integer";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  if (typeof value === "string") return "string";
  if (value instanceof Uint8Array) return "bytes";
  if (Array.isArray(value)) return "list";
  if (typeof value === "object") return "object";
  return typeof value;
}

/** A value as serde names it in "invalid type" errors (what the Rust SDK reports). */
function unexpected(value) {
  switch (kindOf(value)) {
    case "null":
      return "unit value";
    case "bool":
      return `boolean \`${value}\``;
    case "integer":
      return `integer \`${value}\``;
    case "number":
      return `floating point \`${value}\``;
    case "string":
      return `string ${JSON.stringify(value)}`;
    case "bytes":
      return "byte array";
    case "list":
      return "sequence";
    case "object":
      return "map";
    default:
      return typeof value;
  }
}

/** A type whose mismatches serde reports as "invalid type: ..., expected <what>". */
function serdeTyped(kind, what, ok, sample) {
  return {
    kind,
    sample: () => sample,
    check(value) {
      if (!ok(value)) throw new Mismatch(`invalid type: ${unexpected(value)}, expected ${what}`);
      return value;
    },
  };
}

function simple(kind, ok, sample, convert = (v) => v) {
  return {
    kind,
    sample: () => sample,
    check(value) {
      if (!ok(value)) throw new Mismatch(`expected ${kind}, got ${kindOf(value)}`, kind);
      return convert(value);
    },
  };
}

const isInteger = (v) => typeof v === "bigint" || (typeof v === "number" && Number.isInteger(v));

function ranged(name, low, high) {
  return {
    kind: "integer",
    sample: () => 1,
    check(value) {
      if (!isInteger(value)) throw new Mismatch(`expected integer, got ${kindOf(value)}`, "integer");
      if (BigInt(value) < low || BigInt(value) > high) {
        throw new Mismatch(`invalid value: integer \`${value}\`, expected ${name}`);
      }
      return typeof value === "bigint" && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
    },
  };
}

/** Field types: they check inputs and name the kinds `describe` lists. */
export const t = {
  string: serdeTyped("string", "a string", (v) => typeof v === "string", "sample"),
  bool: serdeTyped("bool", "a boolean", (v) => typeof v === "boolean", true),
  integer: simple("integer", isInteger, 1),
  number: simple("number", (v) => typeof v === "number" || typeof v === "bigint", 1.5, Number),
  bytes: simple("bytes", (v) => v instanceof Uint8Array, new Uint8Array([1])),
  any: { kind: "any", sample: () => null, check: (v) => v },
  /** An unsigned 32-bit integer, as Rust's `u32`. */
  u32: ranged("u32", 0n, 2n ** 32n - 1n),
  /** An unsigned 64-bit integer, as Rust's `u64` (exact up to 2^53 as a number). */
  u64: ranged("u64", 0n, 2n ** 64n - 1n),
  i64: ranged("i64", -(2n ** 63n), 2n ** 63n - 1n),
  /** A list, of `item`s if given. */
  list(item) {
    return {
      kind: "list",
      sample: () => (item ? [item.sample()] : []),
      check(value) {
        if (!Array.isArray(value)) throw new Mismatch(`expected list, got ${kindOf(value)}`);
        return item ? value.map((v) => item.check(v)) : value;
      },
    };
  },
  /** A nested object, with `fields` if given. */
  object(fields) {
    return {
      kind: "object",
      sample: () => (fields ? sampleOf(fields) : {}),
      check(value) {
        if (fields) return build(fields, value);
        if (kindOf(value) !== "object") throw new Mismatch(`expected object, got ${kindOf(value)}`);
        return value;
      },
    };
  },
  /** Absent or nil is `null`. */
  optional(inner) {
    return {
      kind: `${inner.kind}?`,
      optional: true,
      sample: () => inner.sample(),
      check(v) {
        if (v === null || v === undefined) return null;
        try {
          return inner.check(v);
        } catch (e) {
          // "expected integer, got string" names the optional kind: "expected integer?, ...".
          if (e instanceof Mismatch && e.expected) throw new Mismatch(`expected ${e.expected}?, got ${kindOf(v)}`, `${e.expected}?`);
          throw e;
        }
      },
    };
  },
};

/** A value of every field, for warming up (see Slice.warm). */
export function sampleOf(fields) {
  return Object.fromEntries(Object.entries(fields ?? {}).map(([name, type]) => [name, type.sample ? type.sample() : null]));
}

/** MessagePack with named fields. */
export function encode(value) {
  return pack(value);
}

export function decode(bytes) {
  return unpack(bytes);
}

/** [name, kind] of each field of a schema. */
export function fieldsOf(fields) {
  return Object.entries(fields ?? {}).map(([name, type]) => [name, type.kind]);
}

/** Only the schema's fields, in its order (so the bytes match the other SDKs'). */
export function pick(fields, value) {
  const out = {};
  for (const name of Object.keys(fields)) out[name] = value[name] ?? null;
  return out;
}

function build(fields, value) {
  const names = Object.keys(fields);
  if (Array.isArray(value)) value = Object.fromEntries(names.map((n, i) => [n, value[i]]));
  if (kindOf(value) !== "object") throw new Mismatch(`expected an object with named fields, got ${kindOf(value)}`);
  const out = {};
  for (const name of names) {
    const type = fields[name];
    if (Object.prototype.hasOwnProperty.call(value, name)) {
      try {
        out[name] = type.check(value[name]);
      } catch (e) {
        if (e instanceof Mismatch) throw new Mismatch(`field \`${name}\`: ${e.message}`);
        throw e;
      }
    } else if (type.optional) {
      out[name] = null;
    } else {
      throw new Mismatch(`missing field \`${name}\``);
    }
  }
  return out;
}

/** Decodes MessagePack into an object with the schema's fields; throws a plain Error naming the field. */
export function decodeAs(fields, bytes) {
  let value;
  try {
    value = unpack(bytes);
  } catch (e) {
    throw new Mismatch(`not MessagePack: ${e.message}`);
  }
  return build(fields, value);
}

export { Mismatch };
