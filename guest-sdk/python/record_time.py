"""Records a build's wall time: record_time.py FILE KEY START END (seconds since the epoch)."""

import json
import os
import sys

path, key, start, end = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
try:
    with open(path) as f:
        times = json.load(f)
except (FileNotFoundError, ValueError):
    times = {}
times[key] = round(end - start, 2)
tmp = f"{path}.{os.getpid()}"
with open(tmp, "w") as f:
    json.dump(times, f, indent=2, sort_keys=True)
    f.write("\n")
os.replace(tmp, path)
