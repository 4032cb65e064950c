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
    cargo build --release --target wasm32-wasip2 -p orders -p inventory -p hostile -p future-version -p effectful -p courses -p catchall

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

# Run a benchmark: prints a table and writes target/bench/NAME.json (store, scale, runtime, automations, contention, polyglot, http, migrate).
# `--backend fdb` (store, http): on a one-process FoundationDB cluster started for the run
# (tests/fdb.sh), the binary built with `--features fdb`; writes target/bench/NAME-fdb.json.
[doc("Run a benchmark (store, scale, runtime, automations, polyglot, http, migrate; `--backend fdb` for store, http on FoundationDB).")]
bench NAME *ARGS: slices polyglot
    #!/usr/bin/env bash
    set -euo pipefail
    backend=embedded args=()
    set -- {{ARGS}}
    while [ $# -gt 0 ]; do
        case "$1" in
        --backend) backend=${2:?--backend needs a value: embedded or fdb}; shift 2 ;;
        --backend=*) backend=${1#--backend=}; shift ;;
        *) args+=("$1"); shift ;;
        esac
    done
    case "$backend" in
    embedded) exec cargo run --release -p counterpoint -- bench {{NAME}} "${args[@]}" ;;
    fdb) ;;
    *) echo "error: --backend $backend: use embedded or fdb" >&2; exit 2 ;;
    esac
    if ! fdb=$(tests/fdb.sh find 2>/tmp/counterpoint-bench-fdb.$$); then
        echo "error: --backend fdb needs FoundationDB 7.3: $(cat /tmp/counterpoint-bench-fdb.$$)." >&2
        echo "  Install fdbserver, fdbcli and libfdb_c.so 7.3 (the foundationdb-server and foundationdb-clients" >&2
        echo "  packages of https://github.com/apple/foundationdb/releases, or a build from source), then point" >&2
        echo "  COUNTERPOINT_FDB_DIR at a directory holding bin/fdbserver, bin/fdbcli and lib/libfdb_c.so" >&2
        echo "  (symbolic links to the installed files will do). Building with --features fdb also needs libclang." >&2
        rm -f /tmp/counterpoint-bench-fdb.$$
        exit 1
    fi
    rm -f /tmp/counterpoint-bench-fdb.$$
    # Built before the cluster starts (linking needs libfdb_c), then run beside it.
    LIBRARY_PATH="$fdb/lib${LIBRARY_PATH:+:$LIBRARY_PATH}" cargo build --release -p counterpoint --features fdb
    COUNTERPOINT_BENCH_BACKEND=fdb tests/fdb.sh run \
        "${CARGO_TARGET_DIR:-target}/release/counterpoint" bench {{NAME}} "${args[@]}"

# Two `counterpoint serve` hosts on one local FoundationDB cluster (tests/fdb.sh), the demo's
# commands sent to each in turn over HTTP, a deploy on one served by the other, a read-model query;
# everything is stopped at the end. Needs FoundationDB (see tests/fdb.sh) and curl, jq.
[doc("Two hosts on one local FoundationDB cluster, the demo's commands sent to each in turn.")]
cluster-demo: slices
    tests/cluster-demo.sh

# The fault-injection tests at length: power loss on a simulated disk for SEEDS seeds, then the
# crash test with CYCLES kill -9 cycles of a writer process.
soak SEEDS="20000" CYCLES="300":
    COUNTERPOINT_SIM_SEEDS={{SEEDS}} cargo test --release --test all -- store::power_loss --nocapture
    CRASH_CYCLES={{CYCLES}} cargo test --release --test all -- store::crash --nocapture

# Run the counterpoint CLI, e.g. `just cli --tenant demo events --type OrderPlaced` after the demo.
cli *ARGS: slices
    cargo run --release -p counterpoint -- --slices {{wasm}}/orders.wasm:{{wasm}}/inventory.wasm {{ARGS}}
