#!/usr/bin/env bash
# Builds a Python slice into a WebAssembly component with componentize-py (pre-initialized:
# the app module is imported at build time and the snapshot is what every instance starts from).
#
#   componentize.sh APP_DIR MODULE OUTPUT.wasm [TIMING_KEY]
#
# Tools come from PyPI only, at the versions pinned in requirements-build.txt, into a local
# virtualenv ($COUNTERPOINT_TOOLS, default: .tools next to the repository's guest-sdk); the
# SDK's runtime dependencies (requirements.txt) are bundled into the component as pure Python.
# With TIMING_KEY, the wall time is recorded in build-times.json next to OUTPUT.
set -euo pipefail
start=$(date +%s.%N)
sdk=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
app=$(cd "$1" && pwd)
module=$2
output=$3
key=${4:-}

# Up to date: nothing the component is made of is newer than it.
if [[ -f $output && -z ${FORCE:-} ]] && [[ -z $(find "$app" "$sdk" "$sdk/../../wit" \
        \( -name node_modules -o -name __pycache__ -o -name .tools \) -prune -o -type f -newer "$output" -print -quit) ]]; then
    echo "$output is up to date" >&2
    exit 0
fi
tools=${COUNTERPOINT_TOOLS:-$sdk/../../.tools}
venv=$tools/py
deps=$tools/py-deps
stamp=$(cat "$sdk/requirements-build.txt" "$sdk/requirements.txt" | sha256sum | cut -c1-16)

if [[ ! -f $venv/.stamp-$stamp ]]; then
    echo "installing the Python slice tools into $venv" >&2
    rm -rf "$venv" "$deps"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$sdk/requirements-build.txt"
    # Pure Python (no C extension: it could not be linked into the component).
    MSGPACK_PUREPYTHON=1 "$venv/bin/pip" install --quiet --disable-pip-version-check \
        --no-binary msgpack --no-deps --target "$deps" -r "$sdk/requirements.txt"
    touch "$venv/.stamp-$stamp"
fi

mkdir -p "$(dirname "$output")"
"$venv/bin/componentize-py" -d "$sdk/../../wit" -w slice-world componentize \
    -p "$app" -p "$sdk" -p "$deps" "$module" -o "$output.tmp" >&2
"$venv/bin/wasm-tools" validate "$output.tmp"
mv "$output.tmp" "$output"

if [[ -n $key ]]; then
    end=$(date +%s.%N)
    "$venv/bin/python" "$sdk/record_time.py" "$(dirname "$output")/build-times.json" "$key" "$start" "$end"
fi
echo "built $output ($(( $(stat -c %s "$output") / 1024 )) KiB)" >&2
