#!/usr/bin/env bash
# Short fan-out regression run (issue 5; about a minute): a fresh release server per
# configuration, `ringback-bench load` against it, and each figure printed beside the one recorded in
# bench/fanout-baseline.json as a ratio (now ÷ recorded). Machines are noisy: read the ratios,
# and re-run before believing a change under ~20%.
# Needs the release build (cargo leptos build --release).
# Usage: bench/fanout.sh [--record]   (--record writes this run's figures as the new baseline)
#        SERVER_BIN=path/to/ringback bench/fanout.sh   (serve with another build, for an A/B)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bin=target/release/ringback
# The server under test (another build for an A/B); the load tool is always this build's.
server_bin=${SERVER_BIN:-$bin}
port=3390
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT
results=$(mktemp)
record=${1:-}

# HTTP/1.1 connections, then HTTP/2 streams (h2c, 1,000 to a connection: `h2-` runs).
for run in 1000x10 10000x10 1000x100 h2-10000x10 h2-10000x50; do
  shape=${run#h2-}; subscribers=${shape%x*}; rate=${shape#*x}
  transport=()
  [ "$run" != "$shape" ] && transport=(--http2-streams 1000)
  "$server_bin" --addr "127.0.0.1:$port" --log warn --data-dir target/bench-data --max-subscribers-per-ip 0 &
  pid=$!
  await_server "$port"
  echo "== $run: $subscribers subscribers x $rate msg/s for 10 s ${transport[*]}" >&2
  out=$("$tool" load --url "http://127.0.0.1:$port" --subscribers "$subscribers" --rate "$rate" --duration 10s --drain 5s "${transport[@]}")
  echo "$out" | grep -v '^json ' >&2
  echo "$run $(echo "$out" | sed -n 's/^json //p')" >>"$results"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
done

node - "$results" bench/fanout-baseline.json "$record" <<'JS'
const fs = require("fs");
const [results, baselineFile, record] = process.argv.slice(2);
const baseline = JSON.parse(fs.readFileSync(baselineFile, "utf8")).runs;
const keys = ["deliveries_per_s", "p50_ms", "p99_ms", "idle_kib_per_subscriber", "lost"];
console.log("\nfigure                            now      recorded   ratio (now / recorded)");
for (const line of fs.readFileSync(results, "utf8").trim().split("\n")) {
  const [run, json] = [line.slice(0, line.indexOf(" ")), line.slice(line.indexOf(" ") + 1)];
  const now = JSON.parse(json);
  if (record === "--record") {
    baseline[run] = Object.fromEntries(keys.map((k) => [k, +now[k].toFixed(1)]));
  }
  for (const key of keys) {
    const was = baseline[run]?.[key];
    const ratio = was ? (now[key] / was).toFixed(2) : "-";
    console.log(`${(run + " " + key).padEnd(34)}${String(+now[key].toFixed(1)).padStart(8)}${String(was ?? "-").padStart(11)}   ${ratio}`);
  }
}
if (record === "--record") {
  const date = new Date().toISOString().slice(0, 10);
  const recorded = `${date}, ${require("os").cpus().length} cores, ${Math.round(require("os").totalmem() / 2 ** 30)} GiB; see BENCHMARKS.md`;
  fs.writeFileSync(baselineFile, JSON.stringify({ recorded, runs: baseline }, null, 2) + "\n");
  console.log(`\nrecorded as the new baseline in ${baselineFile}`);
}
JS
