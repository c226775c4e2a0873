#!/usr/bin/env bash
# A mass resume (issue 22): what a fleet of browsers coming back after a crash costs everyone
# else. A fresh release server per run; its history filled (1,024 messages of 16 KiB: 16 MiB);
# then 2,000 subscribers resume from the start of it (`Last-Event-ID` older than all of it),
# each reading at most 64 KiB/s, while one canary subscriber (HTTP/1.1) receives a publish every
# 100 ms. Prints the canary's latency, the publishes that went out late, the server's CPU, its
# RSS peak (sampled every 250 ms) and after, and how many resumers were cut for falling behind.
# Run with `--replay-rate 0` too (EXTRA="--replay-rate 0") to see the budget's effect.
# Needs the release build (cargo leptos build --release).
# Usage: [RESUMERS=2000] [EXTRA="..."] [SERVER_BIN=path/to/ringback] bench/mass-resume.sh [rounds]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
resumers=${RESUMERS:-2000}
rounds=${1:-1}
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT
for round in $(seq "$rounds"); do
  port=$(free_port)
  # shellcheck disable=SC2086
  "${SERVER_BIN:-target/release/ringback}" --addr "127.0.0.1:$port" --log warn --data-dir target/bench-data \
    --max-subscribers-per-ip 0 ${EXTRA:-} &
  pid=$!
  await_server "$port"
  echo "== round $round: 1 canary x 10 msg/s, $resumers resuming from a full history at 64 KiB/s ${EXTRA:-}" >&2
  "$tool" load --url "http://127.0.0.1:$port" --subscribers 1 --rate 10 --duration 28s --drain 2s \
    --prefill 1024 --resumers "$resumers" --resume-read-rate 65536
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
done
