#!/usr/bin/env bash
# Compressed event streams against plain ones (issue 26): a fresh release server per run,
# 10,000 subscribers × 10 msg/s (RATE) for 10 s of a feed (`--feed ticks`: price ticks, ~170-byte JSON
# objects with repeated keys; `--feed pad`: the padded load message), `ringback-bench load` on
# the same machine, for each connection shape:
#   h1      cleartext HTTP/1.1, a connection each
#   tls-h2  TLS + HTTP/2, one stream per connection (a browser)
# and each encoding:
#   identity  a server that never compresses (--stream-compression off), clients that ask nothing
#   gzip      --stream-compression gzip, clients that ask for gzip (and decode it as it arrives)
# Prints each run's figures (bytes on the wire and decoded per delivery, server µs per delivery,
# idle KiB per subscriber, p50/p99, lost), then the medians, gzip as a ratio of identity's.
# Needs the release build (cargo leptos build --release). The subscribers connect from 8 loopback
# addresses, so back-to-back runs do not run out of ephemeral ports.
# Usage: bench/compression.sh [ROUNDS]   (default 1; encodings alternate within a shape)
#        SHAPES="h1" FEED=pad RATE=5 bench/compression.sh 2
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
rounds=${1:-1}
shapes=${SHAPES:-h1 tls-h2}
feed=${FEED:-ticks}
rate=${RATE:-10}
port=3394
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT
results=$(mktemp)

for round in $(seq "$rounds"); do
  for shape in $shapes; do
    case $shape in
      h1) transport=() ;;
      tls-h2) transport=(--tls --http2-streams 1) ;;
      *) echo "unknown shape $shape" >&2; exit 2 ;;
    esac
    for encoding in identity gzip; do
      case $encoding in
        identity) server=(--stream-compression off); client=() ;;
        gzip) server=(--stream-compression gzip); client=(--gzip) ;;
      esac
      start_ringback "$port" "${server[@]}"
      out=$("$tool" load --url "http://127.0.0.1:$port" --subscribers 10000 --rate "$rate" --duration 10s \
        --drain 5s --sources 8 --feed "$feed" "${transport[@]}" "${client[@]}")
      record_run "$results" "$shape/$encoding" "$out"
      stop_server
    done
  done
done

node - "$results" "$feed" "$rate" <<'JS'
const { readRuns, median, usPerDelivery: us, fixed } = require("./bench/runs.cjs");
const runs = readRuns(process.argv[2]);
console.log(`\nfeed: ${process.argv[3]}; 10,000 subscribers × ${process.argv[4]} msg/s × 10 s; medians of ${runs[Object.keys(runs)[0]].length} run(s)`);
console.log("shape/encoding    wire B/deliv  decoded B/deliv  server µs/deliv  idle KiB/sub  p50 ms  p99 ms  lost");
const m = {};
for (const k of Object.keys(runs)) {
  const r = runs[k];
  m[k] = { wire: median(r.map((x) => x.wire_bytes_per_delivery)), us: median(r.map(us)), kib: median(r.map((x) => x.idle_kib_per_subscriber)) };
  console.log(`${k.padEnd(17)} ${fixed(m[k].wire, 1).padStart(12)}  ${fixed(median(r.map((x) => x.plain_bytes_per_delivery)), 1).padStart(15)}  ${fixed(m[k].us).padStart(15)}  ${fixed(m[k].kib).padStart(12)}  ${fixed(median(r.map((x) => x.p50_ms)), 1).padStart(6)}  ${fixed(median(r.map((x) => x.p99_ms)), 1).padStart(6)}  ${r.map((x) => x.lost).join(",")}  (µs/deliv by run: ${r.map((x) => fixed(us(x))).join(", ")})`);
}
for (const shape of new Set(Object.keys(m).map((k) => k.split("/")[0]))) {
  const [id, gz] = [m[`${shape}/identity`], m[`${shape}/gzip`]];
  if (id && gz) console.log(`${shape}: gzip ${fixed(id.wire / gz.wire)}× fewer bytes per delivery; server CPU per delivery ×${fixed(gz.us / id.us)} of identity's; idle memory ${fixed(gz.kib - id.kib)} KiB per subscriber more`);
}
JS
