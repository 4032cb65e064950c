# Counterpoint's everyday commands. `./dev RECIPE` installs what they need first.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# The whole test suite: unit tests, the store conformance suite, racing, crash and end-to-end tests.
test:
    cargo test --release

# Run a benchmark: prints a table and writes target/bench/NAME.json (store).
bench NAME *ARGS:
    cargo run --release -p counterpoint -- bench {{NAME}} {{ARGS}}

# The crash test with many more kill -9 cycles.
soak CYCLES="300":
    CRASH_CYCLES={{CYCLES}} cargo test --release --test all -- store::crash --nocapture
