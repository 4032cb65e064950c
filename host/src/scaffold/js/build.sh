#!/usr/bin/env bash
# Builds this slice into target/wasm32-wasip2/release/{crate}.wasm with componentize-qjs (installed
# from npm, pinned, by the SDK's componentize.sh; COUNTERPOINT_JS_ENGINE=spidermonkey for
# componentize-js).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec "{sdk}/componentize.sh" "$here/slice.js" "$here/target/wasm32-wasip2/release/{crate}.wasm"
