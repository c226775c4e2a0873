#!/usr/bin/env bash
# Instructions per HTTP/2 request (h2c, GET /healthz) for Ringback's h2 driver and for hyper's
# HTTP/2 on the same binary, counted by valgrind's callgrind: repeatable where req/s on two shared
# cores is not. Each driver serves N1 and then N2 requests in two runs; (I2 - I1) / (N2 - N1)
# cancels start-up and shutdown. Needs the release build and valgrind; stays on 127.0.0.1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
cd "$ROOT"
export LEPTOS_OUTPUT_NAME=ringback LEPTOS_SITE_ROOT=target/site LEPTOS_SITE_PKG_DIR=pkg LEPTOS_HASH_FILES=true
N1=${N1:-10000}; N2=${N2:-30000}; port=3600
# SERVER_BIN counts another build (an A/B); DRIVERS narrows the drivers counted.
server_bin=${SERVER_BIN:-target/release/ringback}
out=$(mktemp -d)

count() { # driver requests -> total instructions
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.$1.$2" \
    "$server_bin" --addr "127.0.0.1:$port" --http2-driver "$1" --log error \
    --data-dir target/bench-data >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 300); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
  h2load -n "$2" -c 4 -m 8 -t 1 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1
  kill -TERM "$pid"; wait "$pid" || true
  sed -n 's/^summary: \([0-9]*\).*/\1/p' "$out/cg.$1.$2"
}

for driver in ${DRIVERS:-ringback hyper}; do
  a=$(count "$driver" "$N1"); b=$(count "$driver" "$N2")
  echo "$driver: $(( (b - a) / (N2 - N1) )) instructions/request  (runs: $a @ $N1, $b @ $N2)"
done
rm -rf "$out"
