#!/usr/bin/env bash
# Builds the Python orders slice: target/wasm32-wasip2/release/orders_py.wasm.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
target=${CARGO_TARGET_DIR:-$here/../../target}
exec "$here/../../guest-sdk/python/componentize.sh" "$here" app "$target/wasm32-wasip2/release/orders_py.wasm" python
