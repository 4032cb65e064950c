// Testing a slice's logic natively (node --test), without building the component.

import { encode, decode } from "./src/codec.js";
import { rawEvent } from "./src/events.js";
import { MemoryState, MemoryStore } from "./src/memory.js";
import { ReadOptions } from "./src/query.js";
import { current } from "./src/slice.js";

export { MemoryState, MemoryStore };

/** A slice over an in-memory log: run commands and projections, look at the events. */
export class TestStore extends MemoryStore {
  constructor(slice = current()) {
    super();
    this.slice = slice;
    this.readModelStates = new Map(); // name -> { kv, after }
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

  /** Answers a read model's query, as the host would: first applies the events of its source
   * appended since the last call (its state is kept per store), then answers; the answer decoded. */
  readModel(name, params = {}) {
    const { kv, after } = this.readModelStates.get(name) ?? { kv: new MemoryState(), after: null };
    const definition = this.slice.readModelNamed(name);
    const { events } = this.read(definition.source, new ReadOptions({ after }));
    if (events.length) this.slice.update(kv, name, events);
    this.readModelStates.set(name, { kv, after: events.length ? events[events.length - 1].position : after });
    return decode(this.slice.answer(kv, name, encode(params)));
  }
}
