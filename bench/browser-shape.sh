#!/usr/bin/env bash
# The connection shapes a browser can arrive in, side by side (issue 13): a fresh release server
# per run, 10,000 subscribers × 10 msg/s for 10 s, `ringback-bench load` on the same machine.
#   h1      cleartext HTTP/1.1, a connection each
#   tls-h1  TLS + HTTP/1.1, a connection each (a browser behind an HTTP/1.1-only hop)
#   tls-h2  TLS + HTTP/2, one stream per connection (a browser)
# Prints each run's figures per shape (idle KiB per subscriber, p50/p99, the server's CPU seconds
# while publishing, lost),
# then the median of each shape and µs per delivery as a ratio of h1's.
# Needs the release build (cargo leptos build --release).
# Usage: bench/browser-shape.sh [ROUNDS]   (default 1; shapes alternate within a round)
#        SHAPES="tls-h2" SERVER_BIN=path/to/ringback bench/browser-shape.sh 3   (another build, for an A/B)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
rounds=${1:-1}
shapes=${SHAPES:-h1 tls-h1 tls-h2}
port=3392
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT
results=$(mktemp)

for round in $(seq "$rounds"); do
  for shape in $shapes; do
    case $shape in
      h1) transport=() ;;
      tls-h1) transport=(--tls) ;;
      tls-h2) transport=(--tls --http2-streams 1) ;;
      *) echo "unknown shape $shape" >&2; exit 2 ;;
    esac
    start_ringback "$port"
    out=$("$tool" load --url "http://127.0.0.1:$port" --subscribers 10000 --rate 10 --duration 10s --drain 5s "${transport[@]}")
    record_run "$results" "$shape" "$out"
    stop_server
  done
done

node - "$results" <<'JS'
const { readRuns, median, usPerDelivery: us } = require("./bench/runs.cjs");
const runs = readRuns(process.argv[2]);
const row = (k, f) => runs[k].map(f).map((x) => +x.toFixed(2)).join(", ");
console.log("\nshape    idle KiB/sub     p50 ms       p99 ms       server CPU-s     µs/delivery (median)   lost");
const h1 = runs.h1 ? median(runs.h1.map(us)) : null;
for (const k of Object.keys(runs)) {
  const m = median(runs[k].map(us));
  console.log(`${k.padEnd(8)} ${row(k, (r) => r.idle_kib_per_subscriber).padEnd(16)} ${row(k, (r) => r.p50_ms).padEnd(12)} ${row(k, (r) => r.p99_ms).padEnd(12)} ${row(k, (r) => r.server_cpu_s).padEnd(16)} ${m.toFixed(2)}${h1 ? ` (×${(m / h1).toFixed(2)} of h1)` : ""}   ${row(k, (r) => r.lost)}`);
}
JS
