#!/usr/bin/env bash
# The console's browser tests: Debian's chromium and chromedriver driven by Selenium (PyPI,
# pinned, in .tools/console) against a real `counterpoint serve`. Screenshots go to
# target/console-screenshots/.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.tools/console
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import selenium" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check selenium==4.40.0
fi
cargo build --quiet --release -p counterpoint
exec "$venv/bin/python" -m unittest -v tests/console/test_console.py
