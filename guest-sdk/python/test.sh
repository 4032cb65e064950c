#!/usr/bin/env bash
# Tests the Python SDK and the Python slices natively (CPython, no component), with the tools
# componentize.sh installs:   guest-sdk/python/test.sh [SLICE_DIR...]
set -euo pipefail
sdk=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tools=${COUNTERPOINT_TOOLS:-$sdk/../../.tools}
python=$tools/py/bin/python
[[ -x $python ]] || { echo "no $python: build a Python slice first (componentize.sh installs the tools)" >&2; exit 1; }
(cd "$sdk/tests" && PYTHONPATH="$sdk:$tools/py-deps" "$python" -m unittest discover -s . -p "test_*.py")
for dir in "$@"; do
    (cd "$dir" && PYTHONPATH="$PWD:$sdk:$tools/py-deps" "$python" -m unittest discover -s . -p "test_*.py")
done
