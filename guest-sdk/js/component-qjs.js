// The component glue for componentize-qjs (QuickJS, the default engine): u64 is a number (exact
// up to 2^53), an absent option is `null`, and a thrown value is the WIT error variant itself.
// componentize.sh bundles it after the slice's module.

import state from "counterpoint:slice/read-model-state@0.1.0";
import store from "counterpoint:slice/store@0.1.0";

import { readModelsExport, sliceExport } from "./src/glue.js";

const wit = {
  read: (query, options) => store.read(query, options),
  append: (events) => store.append(events),
  state,
  u64: (n) => Number(n),
  none: null,
  error: (variant) => variant,
};

export const slice = sliceExport(wit);
export const readModels = readModelsExport(wit);
