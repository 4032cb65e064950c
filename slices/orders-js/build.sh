#!/usr/bin/env bash
# Builds the JavaScript orders slice: target/wasm32-wasip2/release/orders_js.wasm
# (componentize-qjs; COUNTERPOINT_JS_ENGINE=spidermonkey for componentize-js).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
target=${CARGO_TARGET_DIR:-$here/../../target}
exec "$here/../../guest-sdk/js/componentize.sh" "$here/orders.js" "$target/wasm32-wasip2/release/orders_js.wasm" js
