#!/usr/bin/env bash
# Runs a command beside a one-process FoundationDB cluster, when FoundationDB can be found.
#
#   tests/fdb.sh find          prints the FoundationDB directory (bin/fdbserver, bin/fdbcli,
#                              lib/libfdb_c.so), or says why there is none and exits 1
#   tests/fdb.sh run CMD...    runs CMD; with FoundationDB found, a fresh cluster on loopback
#                              runs beside it and CMD sees
#                                FDB_CLUSTER_FILE   the cluster
#                                FDB_FEATURES       "--features counterpoint-tests/fdb"
#                                LIBRARY_PATH, LD_LIBRARY_PATH   to link and load libfdb_c
#                              without it, FDB_FEATURES is empty and the FoundationDB tests are
#                              reported as ignored, with this reason printed first.
#
# Where FoundationDB is looked for, in order: $COUNTERPOINT_FDB_DIR; ../shared/fdb beside the
# repository; $HOME/.cache/counterpoint/fdb-7.3.79. Point COUNTERPOINT_FDB_DIR at your own
# build or install (a directory with bin/ and lib/ as above) to use it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

find_fdb() {
    local candidates=()
    [ -n "${COUNTERPOINT_FDB_DIR:-}" ] && candidates+=("$COUNTERPOINT_FDB_DIR")
    candidates+=("$repo/../shared/fdb" "${HOME:-/root}/.cache/counterpoint/fdb-7.3.79")
    for dir in "${candidates[@]}"; do
        if [ -x "$dir/bin/fdbserver" ] && [ -x "$dir/bin/fdbcli" ] && [ -f "$dir/lib/libfdb_c.so" ]; then
            (cd "$dir" && pwd)
            return 0
        fi
    done
    echo "FoundationDB not found (looked in: ${candidates[*]}; each needs bin/fdbserver, bin/fdbcli, lib/libfdb_c.so)" >&2
    return 1
}

free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "no free port for FoundationDB" >&2
    return 1
}

# A one-process cluster on loopback, memory engine (nothing survives the process): fdbserver
# with its data, logs and cluster file in DIR, then `configure new single memory` until the
# database is available.
start_cluster() {
    local bin=$1 dir=$2 port=$3
    mkdir -p "$dir/data" "$dir/logs"
    echo "counterpoint$RANDOM:test$RANDOM@127.0.0.1:$port" >"$dir/fdb.cluster"
    "$bin/fdbserver" --cluster-file "$dir/fdb.cluster" --public-address "127.0.0.1:$port" \
        --listen-address "127.0.0.1:$port" --datadir "$dir/data" --logdir "$dir/logs" \
        --knob_disable_posix_kernel_aio=1 >"$dir/fdbserver.out" 2>&1 &
    echo $! >"$dir/fdbserver.pid"
    for _ in $(seq 1 60); do
        "$bin/fdbcli" -C "$dir/fdb.cluster" --exec "configure new single memory" --timeout 5 >/dev/null 2>&1 || true
        if "$bin/fdbcli" -C "$dir/fdb.cluster" --exec "status minimal" --timeout 5 2>/dev/null | grep -q "available"; then
            return 0
        fi
        sleep 1
    done
    return 1
}

case "${1:-}" in
find)
    find_fdb
    ;;
run)
    shift
    if ! fdb=$(find_fdb 2>/tmp/counterpoint-fdb-why.$$); then
        echo "== FoundationDB tests skipped: $(cat /tmp/counterpoint-fdb-why.$$)" >&2
        rm -f /tmp/counterpoint-fdb-why.$$
        FDB_FEATURES="" exec "$@"
    fi
    rm -f /tmp/counterpoint-fdb-why.$$
    cluster_dir=$(mktemp -d "${TMPDIR:-/tmp}/counterpoint-fdb.XXXXXX")
    stop() {
        kill "$(cat "$cluster_dir/fdbserver.pid" 2>/dev/null)" 2>/dev/null || true
        sleep 0.2
        rm -rf "$cluster_dir"
    }
    trap stop EXIT
    port=$(free_port)
    start_cluster "$fdb/bin" "$cluster_dir" "$port" \
        || { echo "FoundationDB did not start on 127.0.0.1:$port:" >&2; tail -20 "$cluster_dir/fdbserver.out" >&2; exit 1; }
    echo "== FoundationDB $("$fdb/bin/fdbserver" --version | head -1 | sed "s/.*(v\(.*\))/\1/") from $fdb: a one-process cluster on 127.0.0.1:$port for the FoundationDB tests" >&2
    export FDB_CLUSTER_FILE="$cluster_dir/fdb.cluster"
    export FDB_FEATURES="--features counterpoint-tests/fdb"
    export LIBRARY_PATH="$fdb/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
    export LD_LIBRARY_PATH="$fdb/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export COUNTERPOINT_FDB_DIR="$fdb"
    "$@"
    ;;
*)
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
