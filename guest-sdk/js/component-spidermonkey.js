// The component glue for componentize-js (SpiderMonkey): u64 is BigInt, an absent option is
// `undefined`, and an error is thrown with the WIT variant as its `payload`. componentize.sh
// bundles it after the slice's module (COUNTERPOINT_JS_ENGINE=spidermonkey).

import * as state from "counterpoint:slice/read-model-state@0.1.0";
import { append, read } from "counterpoint:slice/store@0.1.0";

import { readModelsExport, sliceExport } from "./src/glue.js";

const wit = {
  read,
  append,
  state,
  u64: (n) => BigInt(n),
  none: undefined,
  error(variant) {
    const err = new globalThis.Error(variant.val);
    err.payload = variant;
    return err;
  },
};

export const slice = sliceExport(wit);
export const readModels = readModelsExport(wit);
