// The component's entry module: the slice, and the exports the host calls.
import "./orders.js";
export { slice } from "@counterpoint/slice-sdk/component";
