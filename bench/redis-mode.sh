#!/usr/bin/env bash
# One `ringback-bench load` run against a server in Redis mode: a fresh redis-server (no persistence)
# and a fresh release server following it, both on free ports, stopped afterwards.
# Needs the release build (cargo leptos build --release) and redis-server.
# Usage: bench/redis-mode.sh <bench args...>
#   the word REDIS in the arguments becomes the Redis URL, e.g. `--redis-url REDIS` to have the
#   tool publish with PUBLISH instead of POST /messages.
# Example: bench/redis-mode.sh --subscribers 10000 --rate 10 --duration 10s --http2-streams 1000
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
export RINGBACK_LOG=warn
redis_port=$(free_port)
port=$(free_port)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
redis-server --port "$redis_port" --save "" --appendonly no >/dev/null &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
url="redis://127.0.0.1:$redis_port/"
target/release/ringback --addr "127.0.0.1:$port" --redis-url "$url" --data-dir target/bench-data \
  --max-subscribers-per-ip 0 --max-connections 19900 &
pids+=($!)
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && break; sleep 0.1; done
args=("$@")
"$tool" load --url "http://127.0.0.1:$port" "${args[@]//REDIS/$url}"
