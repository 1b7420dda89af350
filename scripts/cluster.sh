#!/usr/bin/env bash
# A livecap cluster on loopback, to try and for the tests: Redis, two replicas sharing sessions
# through it (and one media folder), HAProxy in front (deploy/haproxy.cfg).
#
#   scripts/cluster.sh start [DIR]          start everything; prints the address to use
#   scripts/cluster.sh stop [DIR]           stop everything it started (by PID)
#   scripts/cluster.sh replica DIR NAME     start replica NAME (a or b) again, e.g. after a kill
#   scripts/cluster.sh redis DIR            start Redis again (its data is in DIR/redis)
#
# DIR (default .cluster) holds the PID files, logs, Redis's append-only file and the media folder.
# Ports come from the environment: FRONT_PORT (8080), REDIS_PORT (6380), PORT_A (8001),
# PORT_B (8002), STATS_PORT (8404). LIVECAP is the command that runs livecap (default
# .venv/bin/livecap); SERVE_ARGS are added to each `livecap serve` (model, workers, --api-key...).
set -euo pipefail
cd "$(dirname "$0")/.."

action=${1:-start}
dir=$(realpath -m "${2:-.cluster}")
FRONT_PORT=${FRONT_PORT:-8080} REDIS_PORT=${REDIS_PORT:-6380}
PORT_A=${PORT_A:-8001} PORT_B=${PORT_B:-8002} STATS_PORT=${STATS_PORT:-8404}
LIVECAP=${LIVECAP:-.venv/bin/livecap}
SERVE_ARGS=${SERVE_ARGS:-}

wait_for() {  # wait_for WHAT COMMAND...: up to 120 s
  local what=$1
  shift
  for _ in $(seq 1200); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "cluster.sh: $what did not start (see $dir/*.log)" >&2
  return 1
}

ready() { curl -sf "http://127.0.0.1:$1/ready"; }

start_replica() {  # start_replica NAME PORT
  # shellcheck disable=SC2086 # SERVE_ARGS is a list of words
  $LIVECAP serve --port "$2" --redis-url "redis://127.0.0.1:$REDIS_PORT/0" --replica "$1" \
    --data-dir "$dir/data" $SERVE_ARGS >>"$dir/$1.log" 2>&1 &
  echo $! >"$dir/$1.pid"
}

start_redis() {  # append-only: a Redis restarted keeps the sessions' records and finals
  mkdir -p "$dir/redis"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$dir/redis" --appendonly yes --save "" \
    --daemonize no >>"$dir/redis.log" 2>&1 &
  echo $! >"$dir/redis.pid"
  wait_for Redis redis-cli -p "$REDIS_PORT" ping
}

case $action in
start)
  mkdir -p "$dir/data"
  start_redis
  start_replica a "$PORT_A"
  start_replica b "$PORT_B"
  wait_for "replica a" ready "$PORT_A"
  wait_for "replica b" ready "$PORT_B"
  LIVECAP_FRONT=127.0.0.1:$FRONT_PORT LIVECAP_REPLICA_A=127.0.0.1:$PORT_A LIVECAP_REPLICA_B=127.0.0.1:$PORT_B \
    LIVECAP_STATS=127.0.0.1:$STATS_PORT haproxy -db -f deploy/haproxy.cfg >>"$dir/haproxy.log" 2>&1 &
  echo $! >"$dir/haproxy.pid"
  wait_for HAProxy ready "$FRONT_PORT"
  echo "livecap cluster: http://127.0.0.1:$FRONT_PORT (replicas a :$PORT_A, b :$PORT_B; Redis :$REDIS_PORT;" \
    "HAProxy stats http://127.0.0.1:$STATS_PORT); stop: scripts/cluster.sh stop $dir"
  ;;
replica)
  name=${3:?which replica: a or b}
  port=$([ "$name" = a ] && echo "$PORT_A" || echo "$PORT_B")
  start_replica "$name" "$port"
  wait_for "replica $name" ready "$port"
  ;;
redis)
  start_redis
  ;;
stop)
  for name in haproxy a b redis; do  # replicas drain on SIGTERM; Redis last, so they can flush to it
    [ -f "$dir/$name.pid" ] || continue
    pid=$(cat "$dir/$name.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/$name.pid"
  done
  ;;
*)
  echo "usage: scripts/cluster.sh start|stop [DIR] | replica DIR NAME | redis DIR" >&2
  exit 2
  ;;
esac
