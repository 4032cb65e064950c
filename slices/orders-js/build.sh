#!/usr/bin/env bash
# Builds the JavaScript orders slice: target/wasm32-wasip2/release/orders_js.wasm.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
target=${CARGO_TARGET_DIR:-$here/../../target}
exec "$here/../../guest-sdk/js/componentize.sh" "$here/app.js" "$target/wasm32-wasip2/release/orders_js.wasm" js
