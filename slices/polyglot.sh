#!/usr/bin/env bash
# Builds the orders slice in every language into target/wasm32-wasip2/release: orders.wasm
# (Rust, cargo), orders_py.wasm (Python, componentize-py), orders_js.wasm (JavaScript,
# componentize-js). Tools come from crates.io, PyPI and npm at pinned versions. Each build's wall
# time goes to build-times.json there (`bench polyglot` reads it); a component that is up to
# date is not rebuilt (FORCE=1 rebuilds the Python and JavaScript ones anyway).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release
before=$(stat -c %Y.%N "$out/orders.wasm" 2>/dev/null || echo none)
start=$(date +%s.%N)
cargo build --quiet --release --target wasm32-wasip2 -p orders
end=$(date +%s.%N)
if [[ $(stat -c %Y.%N "$out/orders.wasm") != "$before" ]]; then
    python3 guest-sdk/python/record_time.py "$out/build-times.json" rust "$start" "$end"
fi
slices/orders-py/build.sh
slices/orders-js/build.sh
