#!/usr/bin/env bash
# Builds this slice into target/wasm32-wasip2/release/{crate}.wasm with componentize-py (installed
# from PyPI, pinned, by the SDK's componentize.sh).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec "{sdk}/componentize.sh" "$here" app "$here/target/wasm32-wasip2/release/{crate}.wasm"
