#!/usr/bin/env bash
# HTTP/2 benchmarks (issue 3), recorded in BENCHMARKS.md:
#  1. h2load against a small route (/healthz), Ringback's h2 driver vs hyper's HTTP/2 on the same
#     binary (--http2-driver), over h2c and TLS, in alternating rounds;
#  2. page load with vs without push (ringback-bench pageload).
# Needs the release build (cargo leptos build --release) and h2load (Debian nghttp2-client).
# Usage: bench/http2.sh [rounds]   -- everything stays on 127.0.0.1 and stops by itself.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
rounds=${1:-3}
bin=target/release/ringback
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

start() { # port driver
  "$bin" --addr "127.0.0.1:$1" --http2-driver "$2" --log warn --data-dir target/bench-data &
  pids+=($!)
  await_server "$1" || exit 1
}
start 3300 ringback
start 3301 hyper

rps() { h2load "$@" 2>/dev/null | sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p'; }
echo "h2load -n 100000 -c 8 -m 16 -t 1 <url>/healthz (req/s; higher is better)"
printf '%-6s %-8s %12s %12s %8s\n' round via ringback hyper ratio
for r in $(seq "$rounds"); do
  for via in h2c tls; do
    scheme=http; [ "$via" = tls ] && scheme=https
    a=$(rps -n 100000 -c 8 -m 16 -t 1 "$scheme://127.0.0.1:3300/healthz")
    b=$(rps -n 100000 -c 8 -m 16 -t 1 "$scheme://127.0.0.1:3301/healthz")
    printf '%-6s %-8s %12s %12s %8.3f\n' "$r" "$via" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN { print a / b }')"
  done
done

echo
echo "ringback-bench pageload --iterations 300 (fresh TLS connection per load)"
for r in $(seq "$rounds"); do
  "$tool" pageload --url https://127.0.0.1:3300/ --push --iterations 300
  "$tool" pageload --url https://127.0.0.1:3300/ --iterations 300
done
