#!/usr/bin/env bash
# What clients that stop reading cost the others (issue 6): a fresh release server per run,
# `ringback-bench load` with 1,000 reading subscribers at 10 msg/s of 2 KiB (so the stalled sockets'
# buffers fill), without and then with 1,000 subscribers that never read (4 KiB receive
# buffers). Prints each run's figures and the ratios with/without. Needs the release build
# (cargo leptos build --release). Usage: bench/stalled.sh [rounds]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bin=target/release/ringback
port=3391
rounds=${1:-2}
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT
results=$(mktemp)

for round in $(seq "$rounds"); do
  for stalled in 0 1000; do
    "$bin" --addr "127.0.0.1:$port" --log warn --data-dir target/bench-data --max-subscribers-per-ip 0 &
    pid=$!
    await_server "$port"
    echo "== round $round: 1000 readers x 10 msg/s x 2 KiB, $stalled stalled" >&2
    out=$("$tool" load --url "http://127.0.0.1:$port" --subscribers 1000 --rate 10 --payload 2048 \
      --duration 10s --drain 5s --stalled "$stalled")
    echo "$out" | grep -v '^json ' >&2
    rss=$(curl -fs "http://127.0.0.1:$port/metrics" | sed -n 's/^process_resident_memory_bytes //p')
    echo "$stalled $rss $(echo "$out" | sed -n 's/^json //p')" >>"$results"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  done
done

node - "$results" <<'JS'
const fs = require("fs");
const rows = fs.readFileSync(process.argv[2], "utf8").trim().split("\n").map((l) => {
  const [stalled, rss, ...json] = l.split(" ");
  return { stalled: +stalled, rss: +rss, ...JSON.parse(json.join(" ")) };
});
console.log("\nstalled  p50 ms  p99 ms  max ms  lost  server RSS after (MiB)");
for (const r of rows) {
  console.log(`${String(r.stalled).padStart(7)}${r.p50_ms.toFixed(1).padStart(8)}${r.p99_ms.toFixed(1).padStart(8)}${r.max_ms.toFixed(1).padStart(8)}${String(r.lost).padStart(6)}${(r.rss / 1048576).toFixed(1).padStart(12)}`);
}
const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p99 = (s) => median(rows.filter((r) => r.stalled === s).map((r) => r.p99_ms));
console.log(`\np99 with 1000 stalled / without: ${(p99(1000) / p99(0)).toFixed(2)} (median of rounds)`);
JS
