#!/usr/bin/env bash
# Measures a two-node cluster at its limit on this machine: two wisp-server
# nodes on one PostgreSQL and one Redis, and `wisp-bench run --find-max`
# against both, reporting the highest rate held, the nodes' CPU per message
# (--server-pid) and what Redis did per message (--redis: commands from
# INFO commandstats, Redis CPU). Not part of the test suite (it measures a
# speed); see the README (wisp-bench).
#
#   scripts/bench-cluster.sh [--replica] [wisp-bench run flags...]
#
# Without --replica the nodes use the local Redis (127.0.0.1:6379, under a
# key prefix of their own, deleted afterwards). With --replica the script
# starts a Redis primary and one replica of its own on free loopback ports
# and the nodes wait for that replica on every mailbox write
# (--redis-replicas 1). PostgreSQL is the local one (127.0.0.1:5432, trust
# auth): a database of its own is created and dropped. Flags after that go
# to `wisp-bench run` (default: --users 1000 --rate 8000 --duration 15
# --find-max), e.g.
#   scripts/bench-cluster.sh --replica --rate 10000 --json
# Proof-of-work and the rate limits are turned off on the nodes (the bench
# registers and sends as fast as it can from one address). To compare two
# builds, point WISP_SERVER_BIN at a copy of the other wisp-server binary.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

replica=false
if [[ "${1:-}" == "--replica" ]]; then
    replica=true
    shift
fi
bench_args=("$@")
if [[ ${#bench_args[@]} -eq 0 ]]; then
    bench_args=(--users 1000 --rate 8000 --duration 15 --find-max)
fi

scripts/ensure-services.sh >/dev/null
echo "bench-cluster: building wisp-server and wisp-bench (release)" >&2
cargo build --release --locked -q -p wisp-server -p wisp-bench

work="$(mktemp -d "${TMPDIR:-/tmp}/wisp-bench-cluster.XXXXXX")"
tag="wispbench$$"
pids=()
redis_pids=()
cleanup() {
    for pid in "${pids[@]}" "${redis_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $tag" >/dev/null 2>&1 || true
    if [[ "$replica" == false ]]; then
        redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "$tag*" | xargs -r -n 500 redis-cli -h 127.0.0.1 -p 6379 DEL >/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# A loopback port nothing listens on now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_for() { # what, command...
    local what="$1"
    shift
    for _ in $(seq 1 100); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "bench-cluster: $what did not come up; logs are in $work" >&2
    trap - EXIT
    exit 1
}

psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $tag" >/dev/null
postgres_url="postgres://postgres@127.0.0.1:5432/$tag"

replicas=0
if [[ "$replica" == true ]]; then
    primary_port="$(free_port)"
    redis-server --port "$primary_port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$work" >"$work/redis-primary.log" 2>&1 &
    redis_pids+=("$!")
    wait_for "the Redis primary" redis-cli -p "$primary_port" ping
    replica_port="$(free_port)"
    mkdir -p "$work/replica"
    redis-server --port "$replica_port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$work/replica" --replicaof 127.0.0.1 "$primary_port" >"$work/redis-replica.log" 2>&1 &
    redis_pids+=("$!")
    wait_for "the Redis replica" sh -c "redis-cli -p $replica_port info replication | grep -q 'master_link_status:up'"
    redis_url="redis://127.0.0.1:$primary_port"
    redis_urls="$redis_url,redis://127.0.0.1:$replica_port"
    replicas=1
else
    redis_url="redis://127.0.0.1:6379"
    redis_urls="$redis_url"
fi

urls=()
for node in 1 2; do
    port="$(free_port)"
    mkdir -p "$work/node$node"
    WISP_POW_DIFFICULTY=0 WISP_REGISTER_LIMIT=0 WISP_SEND_LIMIT=0 \
        WISP_MAX_CONNECTIONS_PER_ADDRESS=0 RUST_LOG="${RUST_LOG:-warn}" \
        "${WISP_SERVER_BIN:-target/release/wisp-server}" --listen "127.0.0.1:$port" --data-dir "$work/node$node" \
        --postgres-url "$postgres_url" --redis-url "$redis_url" --redis-prefix "$tag" \
        --redis-replicas "$replicas" --server-name "bench-cluster" \
        >"$work/node$node.log" 2>&1 &
    pids+=("$!")
    wait_for "node $node" curl -sf "http://127.0.0.1:$port/readyz"
    urls+=("ws://127.0.0.1:$port")
done

echo "bench-cluster: nodes ${urls[*]} (pids ${pids[*]}), PostgreSQL $tag, Redis $redis_urls" >&2
status=0
target/release/wisp-bench run --server "$(IFS=,; echo "${urls[*]}")" \
    --server-pid "$(IFS=,; echo "${pids[*]}")" --redis "$redis_urls" "${bench_args[@]}" || status=$?
exit "$status"
