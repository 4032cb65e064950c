# Counterpoint's everyday commands. `./dev RECIPE` installs what they need first.

set shell := ["bash", "-euo", "pipefail", "-c"]

wasm := "target/wasm32-wasip2/release"

# List the recipes.
default:
    @just --list

# The main job: the host with the example slices on the embedded store (data in .counterpoint/).
demo: slices
    cargo run --release -p counterpoint -- --slices {{wasm}}/orders.wasm:{{wasm}}/inventory.wasm demo

# Build every slice component (examples and test fixtures) for wasm32-wasip2.
slices:
    cargo build --release --target wasm32-wasip2 -p orders -p inventory -p hostile -p future-version -p effectful

# The orders slice in Python and JavaScript (componentize-py from PyPI, componentize-qjs from npm,
# pinned) next to the Rust one; build times go to target/wasm32-wasip2/release/build-times.json.
polyglot:
    slices/polyglot.sh

# The Python and JavaScript SDKs' and slices' own tests, natively (CPython, Node.js).
test-polyglot: polyglot
    guest-sdk/python/test.sh slices/orders-py
    cd guest-sdk/js && node --test test/
    cd slices/orders-js && node --import ../../guest-sdk/js/register.js --test

# The web console in Debian's headless Chromium, driven by Selenium (screenshots in
# target/console-screenshots/).
test-console: slices
    tests/console/run.sh

# The whole test suite: the store conformance, racing and crash tests, the guest SDKs and the
# example slices natively, the end-to-end tests with the compiled slices in a real host, the
# FoundationDB backend on a one-process cluster (where tests/fdb.sh finds FoundationDB; its cases
# are reported as ignored otherwise), and the console in a browser.
test: slices test-polyglot
    tests/fdb.sh run bash -c 'cargo test --release --workspace $FDB_FEATURES'
    tests/console/run.sh

# Serve the HTTP API with a configuration file (see the README), e.g. `just serve counterpoint.toml`.
serve CONFIG *ARGS: slices
    cargo run --release -p counterpoint -- serve --config {{CONFIG}} {{ARGS}}

# Run a benchmark: prints a table and writes target/bench/NAME.json (store, runtime, automations, polyglot, http).
bench NAME *ARGS: slices polyglot
    cargo run --release -p counterpoint -- bench {{NAME}} {{ARGS}}

# The crash test with many more kill -9 cycles.
soak CYCLES="300":
    CRASH_CYCLES={{CYCLES}} cargo test --release --test all -- store::crash --nocapture

# Run the counterpoint CLI, e.g. `just cli events --type OrderPlaced`.
cli *ARGS: slices
    cargo run --release -p counterpoint -- --slices {{wasm}}/orders.wasm:{{wasm}}/inventory.wasm {{ARGS}}
