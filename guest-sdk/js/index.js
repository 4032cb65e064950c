// Counterpoint's JavaScript SDK for feature slices: events, queries, commands, projections,
// automations and read models, compiled to a WebAssembly component (componentize-js).
//
//   import { Slice, Query, Rejected, tag, t } from "@counterpoint/slice-sdk";
//
//   export const greeter = new Slice("greeter", "0.1.0");
//   const Greeted = greeter.event("Greeted", {
//     fields: { name: t.string },
//     tags: (e) => [tag("name", e.name)],
//   });
//   greeter.command("greet", {
//     input: { name: t.string },
//     run(input, ctx) {
//       if (ctx.read(Query.of(Greeted).tag(tag("name", input.name))).length) throw new Rejected("already greeted");
//       ctx.append(Greeted, { name: input.name });
//       return `Hello, ${input.name}!`;
//     },
//   });
//
// Payloads are MessagePack with named fields (the same bytes the Rust SDK writes), so slices
// in any language share one log. The component's entry module re-exports `slice` from
// "@counterpoint/slice-sdk/component".

export { Slice, Context, CommandCall, State, current, defineEvent } from "./src/slice.js";
export { MemoryState } from "./src/memory.js";
export { Error, Rejected, InvalidInput, NotFound, Conflict, StoreError } from "./src/errors.js";
export { Envelope, Events, tag } from "./src/events.js";
export { Item, Query, ReadOptions, positionNumber, positionOf, comparePositions } from "./src/query.js";
export { t, encode, decode } from "./src/codec.js";
