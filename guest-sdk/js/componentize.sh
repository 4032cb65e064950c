#!/usr/bin/env bash
# Builds a JavaScript slice into a WebAssembly component, pre-initialized with Wizer: the
# modules are evaluated (and the slice warmed up) at build time, and that snapshot is what every
# instance starts from.
#
#   componentize.sh SLICE.js OUTPUT.wasm [TIMING_KEY]
#
# SLICE.js defines the slice (`new Slice(...)`, imports "@counterpoint/slice-sdk"). It is bundled
# with the SDK and the engine's glue into one module (esbuild), then componentized by
#   COUNTERPOINT_JS_ENGINE=qjs            componentize-qjs (QuickJS; the default), or
#   COUNTERPOINT_JS_ENGINE=spidermonkey   componentize-js (SpiderMonkey; 6x the size, 3x the time).
# The tools come from the npm registry at the versions pinned in package.json and
# package-lock.json (`npm ci` into this directory's node_modules). With TIMING_KEY, the wall time
# is recorded in build-times.json next to OUTPUT.
set -euo pipefail
start=$(date +%s.%N)
sdk=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
slice=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
output=$2
key=${3:-}
engine=${COUNTERPOINT_JS_ENGINE:-qjs}
case $engine in
    qjs | spidermonkey) ;;
    *) echo "COUNTERPOINT_JS_ENGINE must be qjs or spidermonkey, not $engine" >&2; exit 2 ;;
esac

# Up to date: nothing the component is made of is newer than it (FORCE=1 rebuilds anyway).
if [[ -f $output && -z ${FORCE:-} ]] && [[ -z $(find "$(dirname "$slice")" "$sdk" "$sdk/../../wit" \
        \( -name node_modules -o -name .tools \) -prune -o -type f -newer "$output" -print -quit) ]]; then
    echo "$output is up to date" >&2
    exit 0
fi

stamp=$(sha256sum "$sdk/package-lock.json" | cut -c1-16)
if [[ ! -f $sdk/node_modules/.stamp-$stamp ]]; then
    echo "installing the JavaScript slice tools into $sdk/node_modules" >&2
    (cd "$sdk" && npm ci --no-audit --no-fund --loglevel=error >&2)
    touch "$sdk/node_modules/.stamp-$stamp"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The slice first, so that it is defined when the glue warms it up.
cat > "$work/entry.js" <<JS
import "$slice";
export { readModels, slice } from "$sdk/component-$engine.js";
JS
"$sdk/node_modules/.bin/esbuild" "$work/entry.js" --bundle --format=esm --platform=neutral --target=es2022 \
    --alias:@counterpoint/slice-sdk="$sdk" --main-fields=module,main \
    --external:counterpoint:slice/store@0.1.0 --external:counterpoint:slice/read-model-state@0.1.0 --log-level=warning --outfile="$work/slice.js"
# Both tools read the WIT through a sandbox that sees the working directory.
cp -r "$sdk/../../wit" "$work/wit"
if [[ $engine == qjs ]]; then
    (cd "$work" && "$sdk/node_modules/.bin/componentize-qjs" --wit wit --js slice.js --world slice-world \
        --sync -o slice.wasm >/dev/null)
else
    (cd "$work" && node "$sdk/node_modules/@bytecodealliance/componentize-js/src/cli.js" slice.js \
        --wit wit --world-name slice-world --disable http fetch-event -o slice.wasm >&2)
fi
mkdir -p "$(dirname "$output")"
mv "$work/slice.wasm" "$output"

if [[ -n $key ]]; then
    end=$(date +%s.%N)
    node -e '
        const fs = require("fs");
        const [path, key, start, end] = process.argv.slice(1);
        let times = {};
        try { times = JSON.parse(fs.readFileSync(path, "utf8")); } catch {}
        times[key] = Math.round((end - start) * 100) / 100;
        const sorted = Object.fromEntries(Object.entries(times).sort());
        fs.writeFileSync(path + ".tmp", JSON.stringify(sorted, null, 2) + "\n");
        fs.renameSync(path + ".tmp", path);
    ' "$(dirname "$output")/build-times.json" "$key" "$start" "$end"
fi
echo "built $output with $engine ($(( $(stat -c %s "$output") / 1024 )) KiB)" >&2
