#!/usr/bin/env bash
# The cluster demo (`just cluster-demo`): two `counterpoint serve` hosts on one local FoundationDB
# cluster, with the same prefix and tenants, told apart only by their data directories (their
# compile caches). The example slices are deployed on host A and served by host B; the demo's
# commands go to A and B in turn over HTTP (curl); two reservations race from both hosts; a new
# build deployed on B is served by A; a read model is queried on one host for a position written
# through the other. Everything it started is stopped at the end, the cluster too.
#
# Needs FoundationDB 7.3 where tests/fdb.sh finds it (COUNTERPOINT_FDB_DIR, ../shared/fdb, or
# ~/.cache/counterpoint/fdb-7.3.79), curl and jq, and the slices built (`just slices`).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
target=${CARGO_TARGET_DIR:-$repo/target}
wasm=$target/wasm32-wasip2/release

if [ "${CLUSTER_DEMO_STAGE:-}" != beside-cluster ]; then
    for tool in curl jq; do
        command -v $tool >/dev/null || { echo "error: the cluster demo needs $tool" >&2; exit 1; }
    done
    for slice in orders inventory; do
        [ -f "$wasm/$slice.wasm" ] || { echo "error: $wasm/$slice.wasm is missing: run \`just slices\`" >&2; exit 1; }
    done
    if ! fdb=$(tests/fdb.sh find 2>/tmp/counterpoint-demo-fdb.$$); then
        echo "error: the cluster demo needs FoundationDB 7.3: $(cat /tmp/counterpoint-demo-fdb.$$)." >&2
        echo "  Install fdbserver, fdbcli and libfdb_c.so 7.3 (https://github.com/apple/foundationdb/releases)" >&2
        echo "  and point COUNTERPOINT_FDB_DIR at a directory holding bin/fdbserver, bin/fdbcli, lib/libfdb_c.so." >&2
        rm -f /tmp/counterpoint-demo-fdb.$$
        exit 1
    fi
    rm -f /tmp/counterpoint-demo-fdb.$$
    echo "building counterpoint with --features fdb (FoundationDB from $fdb)" >&2
    LIBRARY_PATH="$fdb/lib${LIBRARY_PATH:+:$LIBRARY_PATH}" cargo build --release --quiet -p counterpoint --features fdb
    CLUSTER_DEMO_STAGE=beside-cluster exec tests/fdb.sh run "$0"
fi

# From here on, tests/fdb.sh runs a fresh one-process cluster beside this script.
bin=$target/release/counterpoint
dir=$(mktemp -d "${TMPDIR:-/tmp}/counterpoint-cluster-demo.XXXXXX")
pids=()
stop() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM

TOKEN=demo-token
ADMIN=demo-admin
prefix="demo-$RANDOM$RANDOM"
run=$RANDOM
declare -A url

step() { printf '\n== %s\n' "$*"; }
say() { printf '  %s\n' "$*"; }

# Starts host $1 and waits for the address it prints.
start_host() {
    local name=$1 config=$dir/$1.toml
    cat >"$config" <<EOF
listen = "127.0.0.1:0"
data_dir = "$dir/$name"
admin_token_sha256 = "$("$bin" hash-token "$ADMIN")"

[tenants.demo]
tokens_sha256 = ["$("$bin" hash-token "$TOKEN")"]

[store]
kind = "fdb"
cluster_file = "$FDB_CLUSTER_FILE"
prefix = "$prefix"
lease_ttl_ms = 3000
EOF
    RUST_LOG=warn "$bin" serve --config "$config" 2>"$dir/$name.log" &
    pids+=($!)
    for _ in $(seq 1 300); do
        if address=$(grep -o 'counterpoint serving on http://[^ ]*' "$dir/$name.log" 2>/dev/null); then
            url[$name]=${address#counterpoint serving on }
            return 0
        fi
        kill -0 "${pids[-1]}" 2>/dev/null || break
        sleep 0.2
    done
    echo "host $name did not start:" >&2
    tail -20 "$dir/$name.log" >&2
    exit 1
}

# call HOST METHOD PATH [BODY]: prints the response body; the HTTP status goes to $status_file
# (a file per concurrent caller), or $dir/status.
call() {
    local host=$1 method=$2 path=$3 body=${4:-} sf=${status_file:-$dir/status}
    local token=$TOKEN
    [[ $path == */slices/*/commands/* || $path == */projections/* || $path == */readmodels/* || $path == */events/* ]] || token=$ADMIN
    curl -sS -o "$sf.body" -w '%{http_code}' -X "$method" -H "authorization: Bearer $token" \
        -H 'content-type: application/json' ${body:+--data-binary "$body"} "${url[$host]}$path" >"$sf"
    cat "$sf.body"
}

deploy() { # HOST SLICE FILE
    curl -sS -o "$dir/body" -w '%{http_code}' -X PUT -H "authorization: Bearer $ADMIN" \
        --data-binary "@$3" "${url[$1]}/v1/t/demo/slices/$2" >"$dir/status"
    [ "$(cat "$dir/status")" = 200 ] || { echo "deploying $2 on $1: $(cat "$dir/status") $(cat "$dir/body")" >&2; exit 1; }
    jq -r .hash "$dir/body"
}

# The last position a command's response names, as the decimal text on the wire (jq 1.6 would
# round an integer past 2^53, and FoundationDB's positions are).
last_position() { grep -o '"positions":\[[^]]*\]' <<<"$1" | sed 's/.*\[//; s/\]//; s/"//g' | tr ',' '\n' | tail -1; }

# command HOST SLICE COMMAND JSON: runs it and tells how it went.
command() {
    local host=$1 slice=$2 name=$3 input=$4 out status status_file=$dir/status.$BASHPID
    out=$(call "$host" POST "/v1/t/demo/slices/$slice/commands/$name" "$input")
    status=$(cat "$status_file")
    if [ "$status" = 200 ]; then
        last=$(last_position "$out")
        say "[$host] $slice $name $(jq -c . <<<"$input") -> ok, $(jq '.positions | length' <<<"$out") event(s) at $last, $(jq .attempts <<<"$out") attempt(s)"
    else
        say "[$host] $slice $name $(jq -c . <<<"$input") -> $status $(jq -r '.error.code // .code // empty' <<<"$out" 2>/dev/null): $(jq -r '.error.message // .message // .' <<<"$out" 2>/dev/null)"
    fi
}

# The event types of an order, as host $1 reads them.
order_events() {
    call "$1" POST /v1/t/demo/events/read "{\"query\":{\"items\":[{\"tags\":[\"order_id:$2\"]}]}}" \
        | jq -r '[.events[].type] | join(" -> ")'
}

step "A one-process FoundationDB cluster ($FDB_CLUSTER_FILE) and two hosts on it, prefix \"$prefix\""
start_host A
start_host B
say "host A: ${url[A]} (data directory $dir/A: its compile cache only)"
say "host B: ${url[B]} (data directory $dir/B)"
say "same configuration otherwise: tenant \"demo\", its token, [store] kind = \"fdb\", the same prefix"

step "Deploy orders and inventory on host A; host B serves them without being told"
for slice in orders inventory; do
    hash=$(deploy A $slice "$wasm/$slice.wasm")
    say "[A] deployed $slice ${hash:0:12}"
done
start=$(date +%s%N)
for _ in $(seq 1 300); do
    seen=$(call B GET /v1/t/demo/slices | jq -r '[.slices[].name] | sort | join(",")')
    [ "$seen" = inventory,orders ] && break
    sleep 0.1
done
[ "$seen" = inventory,orders ] || { echo "host B never listed the slices (it lists: $seen)" >&2; exit 1; }
say "[B] lists inventory and orders after $(( ($(date +%s%N) - start) / 1000000 )) ms (it watches the catalog's version key)"

order="order-$run"
sku="apple-$run"
step "The demo's commands, to host B and host A in turn"
command B inventory receive-stock "{\"sku\":\"$sku\",\"qty\":10}"
command A orders place-order "{\"order_id\":\"$order\",\"customer_id\":\"ada\"}"
command B orders add-item "{\"order_id\":\"$order\",\"sku\":\"$sku\",\"qty\":3,\"price\":120}"
command A inventory reserve-stock "{\"order_id\":\"$order\",\"sku\":\"$sku\",\"qty\":3}"
say "order $order, as host B reads it: $(order_events B "$order")"

step "Two orders race for the last 7 apples, 4 each: one reservation sent to A, the other to B, at once"
command A orders place-order "{\"order_id\":\"$order-a\",\"customer_id\":\"bob\"}"
command B orders place-order "{\"order_id\":\"$order-b\",\"customer_id\":\"bob\"}"
command A inventory reserve-stock "{\"order_id\":\"$order-a\",\"sku\":\"$sku\",\"qty\":4}" >"$dir/race-a" &
race_a=$!
command B inventory reserve-stock "{\"order_id\":\"$order-b\",\"sku\":\"$sku\",\"qty\":4}" >"$dir/race-b" &
race_b=$!
wait $race_a $race_b || true
cat "$dir/race-a" "$dir/race-b"
say "(exactly one is reserved: both commands read the stock, FoundationDB's conflict check lets one append"
say " land, and the other host's command runner re-ran its command, which then saw too little stock)"

step "Eight add-item commands on one order at once, four to each host"
busy="$order-busy"
command A orders place-order "{\"order_id\":\"$busy\",\"customer_id\":\"cy\"}"
adders=()
for i in 0 1 2 3 4 5 6 7; do
    host=$([ $((i % 2)) = 0 ] && echo A || echo B)
    command $host orders add-item "{\"order_id\":\"$busy\",\"sku\":\"item-$i\",\"qty\":1,\"price\":100}" >"$dir/add-$i" &
    adders+=($!)
done
wait "${adders[@]}" || true
cat "$dir"/add-*
say "order $busy holds $(call B POST /v1/t/demo/slices/orders/projections/order-summary "{\"order_id\":\"$busy\"}" | jq -c '.result.items | length') items (host B's projection)"

step "Automations: orders confirmed on A and on B; each worker runs on one host (leases in FoundationDB)"
for spec in "A $order-c 2" "B $order-d 5"; do
    read -r host id qty <<<"$spec"
    command $host orders place-order "{\"order_id\":\"$id\",\"customer_id\":\"dee\"}"
    command $host orders add-item "{\"order_id\":\"$id\",\"sku\":\"$sku\",\"qty\":$qty,\"price\":120}"
    command $host orders confirm-order "{\"order_id\":\"$id\"}"
done
for spec in "B $order-c StockReserved" "A $order-d OrderCancelled"; do
    read -r host id outcome <<<"$spec"
    for _ in $(seq 1 150); do
        events=$(order_events "$host" "$id")
        [[ $events == *$outcome* ]] && break
        sleep 0.2
    done
    say "[$host] $id: $events"
done
say "(inventory's reserve-on-confirm reacted to OrderConfirmed; for $order-d it recorded StockReservationFailed,"
say " and orders' cancel-when-out-of-stock cancelled the order)"

step "Read model: inventory's stock-levels on host B, for the position host A just wrote"
command A inventory receive-stock "{\"sku\":\"$sku\",\"qty\":5}"
at=$last
result=$(call B POST "/v1/t/demo/slices/inventory/readmodels/stock-levels?at_least=$at&wait_ms=10000" "{\"sku\":\"$sku\"}")
say "[B] stock-levels {\"sku\":\"$sku\"} at least $at -> $(cat "$dir/status") $(jq -c .result <<<"$result")"
say "[A] stock-level projection (replays the log) -> $(call A POST /v1/t/demo/slices/inventory/projections/stock-level "{\"sku\":\"$sku\"}" | jq -c .result)"

step "A new build of orders deployed on host B; host A serves it"
# The same component with a custom section (as a build that stamps a build id): other bytes, another hash.
{ cat "$wasm/orders.wasm"; printf '\x00\x15\x08build-idcluster-demo'; } >"$dir/orders-v2.wasm"
hash=$(deploy B orders "$dir/orders-v2.wasm")
say "[B] deployed orders ${hash:0:12}"
start=$(date +%s%N)
for _ in $(seq 1 300); do
    serving=$(call A GET /v1/t/demo/slices/orders | jq -r .hash)
    [ "$serving" = "$hash" ] && break
    sleep 0.1
done
[ "$serving" = "$hash" ] || { echo "host A still serves ${serving:0:12}" >&2; exit 1; }
say "[A] serves orders ${serving:0:12} after $(( ($(date +%s%N) - start) / 1000000 )) ms"
command A orders place-order "{\"order_id\":\"$order-e\",\"customer_id\":\"eve\"}"

step "The log, as each host reads it"
for host in A B; do
    read=$(call $host POST /v1/t/demo/events/read '{"limit":10000}')
    say "[$host] $(jq '.events | length' <<<"$read") events; newest: $(jq -c '.events[-1] | {type, tags}' <<<"$read")"
done
for host in A B; do
    say "[$host] automations running here (holding the lease): $(call $host GET /v1/t/demo/automations | jq -r '[.automations[]? | select(.active) | .slice + "/" + .name] | if length == 0 then "none" else join(", ") end')"
done

step "Stopping both hosts and the cluster"
