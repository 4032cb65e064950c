// Events: plain objects checked against their definition out, envelopes of stored events in.

import { decode, decodeAs, encode, pick } from "./codec.js";
import { InvalidInput, StoreError } from "./errors.js";
import { positionNumber } from "./query.js";

/** A tag `key:value`, the convention for tags that identify an entity. */
export function tag(key, value) {
  return `${key}:${value}`;
}

/** Tags are a set: sorted and deduplicated, so the same event always carries the same list. */
export function tagsOfEvent(definition, data) {
  return [...new Set(definition.tags(data))].sort();
}

/** An event as the host stores it: type, tags, MessagePack data, metadata pairs. */
export function rawEvent(definition, data) {
  const fields = pick(definition.fields, data);
  return { eventType: definition.type, tags: tagsOfEvent(definition, fields), data: encode(fields), metadata: [] };
}

/** The WIT `tags` export for one event definition: decode the payload, ask the event. */
export function tagsOf(definition, bytes) {
  let data;
  try {
    data = decodeAs(definition.fields, bytes);
  } catch (e) {
    throw new InvalidInput(`not a ${definition.type}: ${e.message}`);
  }
  return tagsOfEvent(definition, data);
}

/** A stored event with its position ([high, low], BigInt halves). */
export class Envelope {
  constructor(position, event) {
    this.position = position;
    this.event = event;
  }
  get eventType() {
    return this.event.eventType;
  }
  get tags() {
    return this.event.tags;
  }
  get data() {
    return this.event.data;
  }
  /** A metadata value, or undefined. */
  metadata(key) {
    return this.event.metadata.find(([k]) => k === key)?.[1];
  }
  is(definition) {
    return this.event.eventType === definition.type;
  }
  /** The payload as `definition`'s fields; a stored event that does not decode is bad data in the log (`store`). */
  decode(definition) {
    const at = positionNumber(this.position);
    if (!this.is(definition)) {
      throw new StoreError(`event at position ${at} has type ${this.event.eventType}, expected ${definition.type}`);
    }
    try {
      return decodeAs(definition.fields, this.event.data);
    } catch (e) {
      throw new StoreError(`cannot decode ${definition.type} at position ${at}: ${e.message}`);
    }
  }
  /** The payload as plain values. */
  value() {
    return decode(this.event.data);
  }
}

/** The events a read selected, in the order read, and the read's consistency position. */
export class Events extends Array {
  static from(events, position) {
    const out = new Events();
    for (const e of events) out.push(e);
    out.position = position;
    return out;
  }
  has(definition) {
    return this.some((e) => e.is(definition));
  }
  /** Every `definition` event, decoded, in the order read. */
  ofType(definition) {
    return this.filter((e) => e.is(definition)).map((e) => e.decode(definition));
  }
}
