// DCB queries and read options, built fluently: Query.of(OrderPlaced).tag(tag("order_id", id)).
// A position is [high, low]: the halves (BigInt) of a 128-bit number. Opaque: compare only.

const typeName = (t) => (typeof t === "string" ? t : t.type);

export function positionNumber([high, low]) {
  return (BigInt(high) << 64n) | BigInt(low);
}

export function positionOf(number) {
  const n = BigInt(number);
  return [n >> 64n, n & 0xffffffffffffffffn];
}

/** -1, 0 or 1, as `a` is before, at or after `b`. */
export function comparePositions(a, b) {
  const [x, y] = [positionNumber(a), positionNumber(b)];
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Matches events whose type is one of `types` (none: any) carrying every one of `tags`. */
export class Item {
  constructor(types = [], tags = []) {
    this.types = types;
    this.tags = tags;
  }
  static any() {
    return new Item();
  }
  /** Events of one of `types` (event definitions or type names). */
  static of(...types) {
    return new Item(types.map(typeName));
  }
  orOf(...types) {
    this.types.push(...types.map(typeName));
    return this;
  }
  /** Requires the tags (tags are AND'ed). */
  tag(...tags) {
    this.tags.push(...tags);
    return this;
  }
}

/** Items are OR'ed; a query without items matches every event. */
export class Query {
  constructor(items = []) {
    this.items = items;
  }
  static all() {
    return new Query();
  }
  static of(...types) {
    return new Query([Item.of(...types)]);
  }
  static tagged(...tags) {
    return new Query([Item.any().tag(...tags)]);
  }
  item(item) {
    this.items.push(item);
    return this;
  }
  /** Also matches what `other` (a Query or an Item) matches. */
  or(other) {
    this.items.push(...(other instanceof Query ? other.items : [other]));
    return this;
  }
  /** Also matches events of `types`, in every item. */
  orOf(...types) {
    for (const item of this.#each()) item.orOf(...types);
    return this;
  }
  /** Requires the tags in every item; on a query without items, every event with them. */
  tag(...tags) {
    for (const item of this.#each()) item.tag(...tags);
    return this;
  }
  #each() {
    if (this.items.length === 0) this.items.push(Item.any());
    return this.items;
  }
  /** The DCB rule the host applies, for native tests. */
  matches(eventType, tags) {
    return (
      this.items.length === 0 ||
      this.items.some((i) => (i.types.length === 0 || i.types.includes(eventType)) && i.tags.every((t) => tags.includes(t)))
    );
  }
}

/** `after` is exclusive; `backwards` reverses the order before `limit` applies. */
export class ReadOptions {
  constructor({ after = null, limit = null, backwards = false } = {}) {
    this.after = after;
    this.limit = limit;
    this.backwards = backwards;
  }
  /** The last `n` matching events, newest first. */
  static last(n) {
    return new ReadOptions({ limit: n, backwards: true });
  }
}
