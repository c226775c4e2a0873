#!/usr/bin/env bash
# Instructions the server spends per delivered message, per connection shape, counted by
# valgrind's callgrind: repeatable where CPU time on two shared cores is not. For each shape the
# server serves the same subscribers twice, once with R1 and once with R2 messages published;
# (I2 - I1) / (deliveries2 - deliveries1) cancels start-up, connecting and shutdown. Needs the
# release build and valgrind; stays on 127.0.0.1.
# Usage: [SERVER_BIN=path/to/ringback] [SHAPES="h1 h2c tls-h2"] bench/delivery-instructions.sh
#        SERVER=floor SHAPES="h1 tls-h1" bench/delivery-instructions.sh   (the floor, `ringback-bench
#        floor`, counted the same way; it speaks HTTP/1.1 only)
#        SERVER_FLAGS="--stream-compression gzip" LOAD_FLAGS="--gzip --feed ticks" bench/delivery-instructions.sh
#        (more flags for the server and for the load tool: compressed streams against plain ones)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
server_bin=${SERVER_BIN:-target/release/ringback}
SUBSCRIBERS=${SUBSCRIBERS:-500}; R1=${R1:-2}; R2=${R2:-10}; port=3610
out=$(mktemp -d)

count() { # shape rate -> "instructions deliveries"
  local shape=$1 rate=$2 args=()
  case $shape in
    h1) ;;
    h2c) args=(--http2-streams "$SUBSCRIBERS") ;;
    tls-h2) args=(--tls --http2-streams 1) ;;
    tls-h1) args=(--tls) ;;
  esac
  if [ "${SERVER:-ringback}" = floor ]; then
    valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
      "$tool" floor --addr "127.0.0.1:$port" --data-dir target/bench-data >/dev/null 2>&1 &
  else
    valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
      "$server_bin" --addr "127.0.0.1:$port" --log error --data-dir target/bench-data \
      --max-subscribers-per-ip 0 ${SERVER_FLAGS:-} >/dev/null 2>&1 &
  fi
  local pid=$!
  await_server "$port" 60
  local report
  report=$("$tool" load --url "http://127.0.0.1:$port" --subscribers "$SUBSCRIBERS" --rate "$rate" \
    --duration 10s --drain 20s "${args[@]}" ${LOAD_FLAGS:-})
  kill -TERM "$pid"; wait "$pid" || true
  local deliveries
  deliveries=$(echo "$report" | sed -n 's/^json .*"deliveries":\([0-9]*\).*/\1/p')
  echo "$(sed -n 's/^summary: \([0-9]*\).*/\1/p' "$out/cg") $deliveries"
}

for shape in ${SHAPES:-h1 h2c tls-h2}; do
  read -r i1 d1 < <(count "$shape" "$R1")
  read -r i2 d2 < <(count "$shape" "$R2")
  echo "$shape: $(( (i2 - i1) / (d2 - d1) )) instructions/delivery  ($SUBSCRIBERS subscribers; $i1 @ $d1, $i2 @ $d2 deliveries)"
done
rm -rf "$out"
