#!/usr/bin/env bash
# A rolling deploy and a crash behind a real load balancer (issue 22): HAProxy (Debian's
# package, installed here if missing) in front of two release servers on one Redis, each
# started on a free port; `ringback-bench fleet` holds SUBSCRIBERS browsers through HAProxy
# (each reconnects as EventSource does, resuming with Last-Event-ID) and publishes RATE msg/s
# through it, each message with an Idempotency-Key, sent again until answered.
#
#   quiet     nothing happens: the latency the others are compared with
#   deploy    SIGTERM server A, start it again, once ready SIGTERM B, start it again
#   crash     kill -9 server A; start it again 5 s later
#   rebalance the deploy, with --max-stream-age 60s and a 90 s phase after it: how the
#             streams spread over the servers again (the default age is 10 minutes)
#
# For each: messages lost and duplicated (0 and 0), the live deliveries' p99 in each phase, the
# reconnections (first to last, peak per second at each server), the publishes sent again, and
# the streams by server at the end. HAProxy holds two files per browser, and a process here at
# most 20,000: 9,000 browsers fit. Needs the release build (cargo leptos build --release) and
# redis-server. Usage: [SUBSCRIBERS=9000] [RATE=20] bench/deploy.sh [quiet|deploy|crash|rebalance]...
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if ! command -v haproxy >/dev/null; then
  echo "installing Debian's haproxy" >&2
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd=sudo
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq haproxy >/dev/null
fi
subscribers=${SUBSCRIBERS:-9000}
rate=${RATE:-20}
scenarios=("$@"); [ ${#scenarios[@]} -gt 0 ] || scenarios=(quiet deploy crash rebalance)
work=$(mktemp -d)
declare -A pid port
others=()
cleanup() {
  for p in "${pid[@]}" "${others[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

ready() { # port: until /readyz answers 200
  for _ in $(seq 300); do curl -fs -o /dev/null "http://127.0.0.1:$1/readyz" && return 0; sleep 0.1; done
  echo "server on $1 never became ready" >&2; return 1
}
start_server() { # name, extra flags...
  local name=$1; shift
  # shellcheck disable=SC2086
  target/release/ringback --addr "127.0.0.1:${port[$name]}" --redis-url "$redis_url" \
    --data-dir target/bench-data --trust-forwarded-for --log warn "$@" >>"$work/$name.log" 2>&1 &
  pid[$name]=$!
}
stop_server() { # name, signal
  kill "-$2" "${pid[$1]}"; wait "${pid[$1]}" 2>/dev/null || true
}

for scenario in "${scenarios[@]}"; do
  extra=(); phases="quiet,$scenario,after"; duration=80s
  case $scenario in
    quiet) phases=quiet; duration=60s ;;
    rebalance) extra=(--max-stream-age 60s); duration=150s ;;
  esac
  redis_port=$(free_port)
  redis-server --port "$redis_port" --save "" --appendonly no >/dev/null &
  others+=($!)
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis_url="redis://127.0.0.1:$redis_port/"
  port[a]=$(free_port); port[b]=$(free_port); lb=$(free_port)
  start_server a "${extra[@]}"; start_server b "${extra[@]}"
  ready "${port[a]}"; ready "${port[b]}"
  cat >"$work/haproxy.cfg" <<CFG
global
  maxconn 9500
defaults
  mode http
  timeout connect 2s
  # SSE streams live for minutes; their heartbeats (15 s) keep them well within these.
  timeout client 1h
  timeout server 1h
  # Below the servers' --keep-alive-timeout (75 s), so HAProxy closes idle ones first.
  timeout http-keep-alive 60s
  option http-no-delay
  option forwardfor
  retries 3
  option redispatch
  # A GET a stopping server closed without an answer is safe to send again.
  retry-on conn-failure empty-response response-timeout
frontend feed
  bind 127.0.0.1:$lb
  default_backend servers
backend servers
  balance leastconn
  option httpchk GET /readyz
  http-check expect status 200
  default-server inter 500ms fall 1 rise 2 maxconn 9500
  http-response set-header x-server %s
  server a 127.0.0.1:${port[a]} check
  server b 127.0.0.1:${port[b]} check
CFG
  haproxy -f "$work/haproxy.cfg" -q &
  others+=($!); hap=$!
  for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$lb/readyz" && break; sleep 0.1; done
  echo "== $scenario: $subscribers browsers and $rate msg/s through HAProxy (leastconn, /readyz) to two servers on one Redis ${extra[*]}" >&2
  "$tool" fleet --url "http://127.0.0.1:$lb" --subscribers "$subscribers" --rate "$rate" \
    --duration "$duration" --drain 30s --phases "$phases" >"$work/fleet.out" 2>&1 &
  fleet=$!
  # Wait for the browsers to be live and the quiet phase to pass.
  for _ in $(seq 1200); do grep -q "publishing" "$work/fleet.out" 2>/dev/null && break; sleep 0.1; done
  sleep 20
  case $scenario in
    deploy|rebalance)
      # As an orchestrator does: the next server stops once the balancer routes to the new one
      # (two health checks, `rise 2`, 500 ms apart).
      kill -USR1 "$fleet"
      stop_server a TERM; start_server a "${extra[@]}"; ready "${port[a]}"; sleep 1.5
      stop_server b TERM; start_server b "${extra[@]}"; ready "${port[b]}"; sleep 1.5
      sleep 10; kill -USR1 "$fleet" ;;
    crash)
      kill -USR1 "$fleet"
      stop_server a KILL; sleep 5; start_server a; ready "${port[a]}"
      sleep 10; kill -USR1 "$fleet" ;;
  esac
  wait "$fleet" || true
  cat "$work/fleet.out"
  for name in a b; do kill "${pid[$name]}" 2>/dev/null || true; wait "${pid[$name]}" 2>/dev/null || true; done
  kill "$hap" 2>/dev/null || true; wait "$hap" 2>/dev/null || true
  kill "${others[0]}" 2>/dev/null || true; others=()
done
