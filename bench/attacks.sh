#!/usr/bin/env bash
# What hostile clients cost (issue 11): for each attack, a fresh release server with its default
# settings, and `ringback-bench load` with a canary of 100 HTTP/1.1 subscribers at 200 msg/s of 1 KiB
# for 10 s (2,000 messages), once without the attack and once with it. Prints each run, then a
# table: the attackers closed by the server (and when), the server's RSS growth at peak and after
# the attack, the server CPU the attack added, and the canary's loss and p99 against the unloaded
# run. Loopback only; every attacker stops with its run. Needs the release build
# (cargo leptos build --release). Usage: [SERVER_BIN=path/to/ringback] bench/attacks.sh [attack ...]
#   (SERVER_BIN serves with another build, e.g. the one before a change; the load tool is this one)
#   attacks: h2-stalled (3,000 streams, 1,000 to a connection, from 3 addresses),
#            partial-preface (6,000), slow-body (2,000), slow-head (2,000)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bin=target/release/ringback
# The server under test (another build for an A/B); the load tool is always this build's.
server_bin=${SERVER_BIN:-$bin}
port=3392
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT
results=$(mktemp)
attacks=("$@")
[ ${#attacks[@]} -gt 0 ] || attacks=(h2-stalled partial-preface slow-body slow-head)

count_for() {
  case "$1" in
    h2-stalled) echo 3000 ;;
    partial-preface) echo 6000 ;;
    *) echo 2000 ;;
  esac
}

for attack in "${attacks[@]}"; do
  for mode in unloaded attacked; do
    "$server_bin" --addr "127.0.0.1:$port" --log warn --data-dir target/bench-data >/dev/null &
    pid=$!
    await_server "$port"
    args=(--url "http://127.0.0.1:$port" --subscribers 100 --rate 200 --payload 1024 --duration 10s --drain 5s)
    if [ "$mode" = attacked ]; then
      args+=(--attack "$attack" --attackers "$(count_for "$attack")" --attack-streams 1000)
    fi
    echo "== $attack: $mode" >&2
    out=$("$tool" load "${args[@]}")
    echo "$out" | grep -v '^json ' >&2
    cuts=$(curl -fs "http://127.0.0.1:$port/metrics" | grep '^ringback_cuts_total' | tr '\n' ' ' || true)
    echo "cuts: $cuts" >&2
    echo "$attack $mode $(echo "$out" | sed -n 's/^json //p')" >>"$results"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  done
done

node - "$results" <<'JS'
const fs = require("fs");
const rows = fs.readFileSync(process.argv[2], "utf8").trim().split("\n").map((l) => {
  const [name, mode, ...json] = l.split(" ");
  return { ...JSON.parse(json.join(" ")), name, mode };
});
const mib = (b) => (b / 1048576).toFixed(1);
console.log("\nattack           attackers  closed (median/last s)  RSS +peak  +after MiB  CPU s added  canary lost  p99 ms unloaded/attacked");
for (const attack of [...new Set(rows.map((r) => r.name))]) {
  const u = rows.find((r) => r.name === attack && r.mode === "unloaded");
  const a = rows.find((r) => r.name === attack && r.mode === "attacked");
  const x = a.attack;
  const closed = `${x.closed} (${x.closed_median_s.toFixed(1)}/${x.closed_max_s.toFixed(1)})`;
  // The unloaded run's CPU over its publishing; the attacked run's from attack start to settled.
  const cpu = (x.server_cpu_s - u.server_cpu_s).toFixed(2);
  console.log(`${attack.padEnd(16)}${String(x.asked).padStart(10)}  ${closed.padStart(22)}  ${mib(x.rss_peak - x.rss_idle).padStart(9)}  ${mib(x.rss_after - x.rss_idle).padStart(10)}  ${cpu.padStart(11)}  ${String(a.lost).padStart(11)}  ${u.p99_ms.toFixed(1)}/${a.p99_ms.toFixed(1)} (x${(a.p99_ms / u.p99_ms).toFixed(2)})`);
}
JS
