#!/usr/bin/env bash
# Many Ringback servers on one Redis (issue 14): for each count of servers, a fresh redis-server
# (no persistence) and that many release servers following it; `ringback-bench load` subscribes
# to the first server and publishes at a fixed rate, by Redis `PUBLISH` (every server sequences
# every message: one script call each) and by `POST /messages` (one server writes, every server
# reads). Redis's CPU is read from /proc before and after each run.
# Prints, per count and publish path: Redis CPU per message, per message per server, p99, lost,
# and how many servers one Redis core would carry at 1,000 msg/s at that per-server cost.
# Needs the release build (cargo leptos build --release) and redis-server.
# Usage: [COUNTS="1 4 8 16"] [RATE=1000] [SUBSCRIBERS=10] bench/many-servers.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
export RINGBACK_LOG=warn
rate=${RATE:-1000}; subscribers=${SUBSCRIBERS:-10}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
hz=$(getconf CLK_TCK)
printf '%-8s %-8s %14s %22s %8s %6s %26s\n' servers publish "Redis µs/msg" "Redis µs/msg/server" "p99 ms" lost "servers per Redis core at $rate/s"
for count in ${COUNTS:-1 4 8 16}; do
  for path in publish post; do
    redis_port=$(free_port)
    redis-server --port "$redis_port" --save "" --appendonly no >/dev/null &
    redis_pid=$!; pids+=("$redis_pid")
    for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    url="redis://127.0.0.1:$redis_port/"
    servers=()
    for i in $(seq "$count"); do
      port=$(free_port)
      target/release/ringback --addr "127.0.0.1:$port" --redis-url "$url" --data-dir target/bench-data \
        --max-subscribers-per-ip 0 >/dev/null &
      pids+=($!); servers+=("$port")
    done
    for port in "${servers[@]}"; do
      for _ in $(seq 200); do curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && break; sleep 0.1; done
    done
    publish=(); [ "$path" = publish ] && publish=(--redis-url "$url")
    before=$(cpu_ticks "$redis_pid")
    out=$("$tool" load --url "http://127.0.0.1:${servers[0]}" --subscribers "$subscribers" --rate "$rate" \
      --duration 10s --drain 3s "${publish[@]}")
    after=$(cpu_ticks "$redis_pid")
    json=$(echo "$out" | sed -n 's/^json //p')
    node -e '
      const [json, ticks, hz, count, path, rate] = process.argv.slice(1);
      const r = JSON.parse(json);
      const us = (ticks / hz) * 1e6 / r.published;
      const perServer = us / count;
      const carried = Math.floor(1e6 / (perServer * rate));
      console.log(`${count.padEnd(8)} ${path.padEnd(8)} ${us.toFixed(1).padStart(14)} ${perServer.toFixed(1).padStart(22)} ${String(r.p99_ms).padStart(8)} ${String(r.lost).padStart(6)} ${String(carried).padStart(26)}`);
    ' "$json" "$((after - before))" "$hz" "$count" "$path" "$rate"
    kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=()
  done
done
