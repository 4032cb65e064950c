// The {name} slice.

import { InvalidInput, Query, Rejected, Slice, t, tag } from "@counterpoint/slice-sdk";

export const slice = new Slice("{name}", "0.1.0");

/** Someone was greeted. */
export const Greeted = slice.event("Greeted", {
  fields: { name: t.string },
  tags: (e) => [tag("name", e.name)],
});

slice.command("greet", {
  description: "Greets someone, once",
  input: { name: t.string },
  run(input, ctx) {
    // (The template fills in names in braces, hence `input.name` written out.)
    const who = input.name;
    if (!who) throw new InvalidInput("name must not be empty");
    const earlier = ctx.read(Query.of(Greeted).tag(tag("name", who)));
    if (earlier.length > 0) throw new Rejected(`${who} was already greeted`);
    ctx.append(Greeted, { name: who });
    return `Hello, ${who}!`;
  },
});

slice.projection("greetings", {
  description: "How many people were greeted",
  init: () => 0,
  source: () => Query.of(Greeted),
  apply: (count) => count + 1,
});
