// Lets Node.js resolve "@counterpoint/slice-sdk" to this directory, for testing slices natively
// without installing the SDK:   node --import <sdk>/register.js --test
import { register } from "node:module";

register("./resolve.js", import.meta.url);
