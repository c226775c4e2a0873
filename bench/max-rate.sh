#!/usr/bin/env bash
# The maximum rate (issue 27): the most messages per second SUBSCRIBERS (1,000) cleartext
# HTTP/1.1 subscribers take with p99 ≤ 100 ms and nothing lost, for the floor
# (`ringback-bench floor`, see floor.sh) and Ringback, alternated at each rate of a ladder,
# fresh processes, 10 s of 100-byte messages from PUBLISHERS (16) keep-alive connections at
# once (one connection waiting for each answer cannot ask high rates on time); Ringback runs
# with --publish-rate 0 (its limit per publisher is a policy, not the delivery path). A run
# passes when the publishers kept the asked rate (at least 99% of it), its p99 is at most
# 100 ms, and nothing is lost or sent twice; a server's ladder ends at its second failed rate.
# (Publishes that go out late are counted but do not fail a run: the floor answers a publish
# only between its passes, so its publishers often wait; what a server takes is the rate.)
# Prints every run, then each round's maximum per server. Needs the release build
# (cargo leptos build --release).
# Usage: bench/max-rate.sh [ROUNDS]   (default 1)
#        RATES="800 1600 3200" bench/max-rate.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
rounds=${1:-1}
subscribers=${SUBSCRIBERS:-1000}
publishers=${PUBLISHERS:-16}
rates=${RATES:-400 800 1200 1600 2000 2400 3200 4000 4800 6400}
port=3397
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT
results=$(mktemp)

for round in $(seq "$rounds"); do
  declare -A failed=([floor]=0 [ringback]=0)
  for rate in $rates; do
    for server in floor ringback; do
      [ "${failed[$server]}" -ge 2 ] && continue
      case $server in
        floor)
          "$tool" floor --addr "127.0.0.1:$port" --data-dir target/bench-data 2>/dev/null &
          pid=$!
          await_server "$port" ;;
        ringback) start_ringback "$port" --publish-rate 0 ;;
      esac
      out=$("$tool" load --url "http://127.0.0.1:$port" --subscribers "$subscribers" --rate "$rate" \
        --duration 10s --drain 5s --payload 100 --publishers "$publishers")
      record_run "$results" "$round/$server/$rate" "$out"
      stop_server
      if ! echo "$out" | sed -n 's/^json //p' | RATE=$rate node -e '
        const r = JSON.parse(require("fs").readFileSync(0, "utf8"));
        process.exit(r.p99_ms <= 100 && r.lost === 0 && r.duplicates === 0 && r.published_per_s >= 0.99 * +process.env.RATE ? 0 : 1);'; then
        failed[$server]=$(( failed[$server] + 1 ))
      fi
    done
  done
done

node - "$results" "$subscribers" <<'JS'
const { readRuns, usPerDelivery: us, fixed } = require("./bench/runs.cjs");
const runs = readRuns(process.argv[2]);
console.log(`\n${process.argv[3]} HTTP/1.1 subscribers, 10 s per rate`);
console.log("round/server/rate    asked/s  sent/s   deliveries/s  server µs/deliv  p50 ms  p99 ms  lost  late  pass");
const best = {};
for (const [k, [r]] of Object.entries(runs)) {
  const [round, server, rate] = k.split("/");
  const pass = r.p99_ms <= 100 && r.lost === 0 && r.duplicates === 0 && r.published_per_s >= 0.99 * +rate;
  if (pass) best[`${round}/${server}`] = Math.max(best[`${round}/${server}`] ?? 0, +rate);
  console.log(`${k.padEnd(20)} ${rate.padStart(7)}  ${fixed(r.published_per_s, 0).padStart(6)}  ${fixed(r.deliveries_per_s, 0).padStart(13)}  ${fixed(us(r)).padStart(15)}  ${fixed(r.p50_ms, 1).padStart(6)}  ${fixed(r.p99_ms, 1).padStart(6)}  ${String(r.lost).padStart(4)}  ${String(r.late_publishes).padStart(4)}  ${pass ? "yes" : "no"}`);
}
for (const [k, rate] of Object.entries(best)) console.log(`round ${k}: maximum ${rate} msg/s`);
JS
