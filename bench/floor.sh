#!/usr/bin/env bash
# Ringback against the floor (issue 27): the least work a server can do per delivery on this
# machine, `ringback-bench floor` (one epoll thread that writes each loop turn's frames to every
# subscriber socket with one write and keeps nothing), in the same run, alternated, a fresh
# process per run. 10,000 subscribers × 10 msg/s × 10 s of 100-byte messages (SUBSCRIBERS, RATE),
# `ringback-bench load` on the same machine, for each shape:
#   h1   cleartext HTTP/1.1: Ringback and the floor alike
#   tls  Ringback over TLS + HTTP/2, one stream per connection (a browser); the floor over TLS +
#        HTTP/1.1 (rustls, one encryption and one write per subscriber per turn)
# Prints each run's server µs per delivery (its CPU seconds while publishing ÷ deliveries), p99,
# idle KiB per subscriber and losses, then the medians and Ringback's ratios to the floor.
# Needs the release build (cargo leptos build --release). Subscribers connect from 8 loopback
# addresses, so back-to-back runs do not run out of ephemeral ports.
# Usage: bench/floor.sh [ROUNDS]   (default 1)
#        SHAPES=h1 SUBSCRIBERS=1000 RATE=100 bench/floor.sh 2
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
rounds=${1:-1}
shapes=${SHAPES:-h1 tls}
subscribers=${SUBSCRIBERS:-10000}
rate=${RATE:-10}
port=3396
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT
results=$(mktemp)

for round in $(seq "$rounds"); do
  for shape in $shapes; do
    for server in floor ringback; do
      case $shape/$server in
        h1/*) transport=() ;;
        tls/floor) transport=(--tls) ;;
        tls/ringback) transport=(--tls --http2-streams 1) ;;
        *) echo "unknown shape $shape" >&2; exit 2 ;;
      esac
      case $server in
        floor)
          "$tool" floor --addr "127.0.0.1:$port" --data-dir target/bench-data 2>/dev/null &
          pid=$!
          await_server "$port" ;;
        ringback) start_ringback "$port" ;;
      esac
      out=$("$tool" load --url "http://127.0.0.1:$port" --subscribers "$subscribers" --rate "$rate" \
        --duration 10s --drain 5s --sources 8 --payload 100 "${transport[@]}")
      record_run "$results" "$shape/$server" "$out"
      stop_server
    done
  done
done

node - "$results" "$subscribers" "$rate" <<'JS'
const { readRuns, median, usPerDelivery: us, fixed } = require("./bench/runs.cjs");
const runs = readRuns(process.argv[2]);
console.log(`\n${process.argv[3]} subscribers × ${process.argv[4]} msg/s × 10 s; medians of ${runs[Object.keys(runs)[0]].length} run(s)`);
console.log("shape/server    server µs/deliv  p50 ms  p99 ms  idle KiB/sub  lost     µs by run");
const m = {};
for (const k of Object.keys(runs)) {
  const r = runs[k];
  m[k] = { us: median(r.map(us)), p99: median(r.map((x) => x.p99_ms)), kib: median(r.map((x) => x.idle_kib_per_subscriber)) };
  console.log(`${k.padEnd(15)} ${fixed(m[k].us).padStart(15)}  ${fixed(median(r.map((x) => x.p50_ms)), 1).padStart(6)}  ${fixed(m[k].p99, 1).padStart(6)}  ${fixed(m[k].kib).padStart(12)}  ${r.map((x) => x.lost).join(",").padEnd(7)}  ${r.map((x) => fixed(us(x))).join(", ")}`);
}
for (const shape of new Set(Object.keys(m).map((k) => k.split("/")[0]))) {
  const [f, r] = [m[`${shape}/floor`], m[`${shape}/ringback`]];
  if (f && r) console.log(`${shape}: Ringback ${fixed(r.us / f.us)}× the floor's CPU per delivery, p99 ${fixed(r.p99 / f.p99)}× the floor's`);
}
JS
