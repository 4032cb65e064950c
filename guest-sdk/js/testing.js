// Testing a slice's logic natively (node --test), without building the component.

import { encode, decode } from "./src/codec.js";
import { rawEvent } from "./src/events.js";
import { MemoryStore } from "./src/memory.js";
import { current } from "./src/slice.js";

export { MemoryStore };

/** A slice over an in-memory log: run commands and projections, look at the events. */
export class TestStore extends MemoryStore {
  constructor(slice = current()) {
    super();
    this.slice = slice;
  }

  /** Appends events as if another command had: `given(OrderPlaced, {...})`. */
  given(definition, data) {
    this.append([rawEvent(definition, data)]);
    return this;
  }

  /** Runs a command by name with an input object; returns its output, decoded. */
  run(command, input = {}) {
    return decode(this.execute(command, input));
  }

  /** Runs a command by name; returns its MessagePack output. */
  execute(command, input = {}) {
    return this.slice.execute(this, command, encode(input));
  }

  /** Runs a projection by name; returns its output, decoded. */
  project(projection, params = {}) {
    const running = this.slice.open(projection, encode(params));
    running.fold(this.read(running.query, running.options).events);
    return decode(running.finish());
  }
}
