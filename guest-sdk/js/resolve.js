// Node.js module resolution hook (see register.js): "@counterpoint/slice-sdk[/testing]" is this SDK.
const sdk = new URL("./", import.meta.url);
const entries = { "@counterpoint/slice-sdk": "index.js", "@counterpoint/slice-sdk/testing": "testing.js" };

export async function resolve(specifier, context, next) {
  const entry = entries[specifier];
  return entry ? { url: new URL(entry, sdk).href, shortCircuit: true } : next(specifier, context);
}
