# Sourced by the benchmark scripts that run the load tool against a release server: the
# toolchain's environment, the project root as working directory, the load tool (its own crate,
# built here if it is not yet) as $tool, the site layout a release server is started with
# (cargo-leptos's LEPTOS_* variables), free_port and await_server.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
cd "$ROOT"
cargo build --release --quiet -p ringback-bench
tool=target/release/ringback-bench
export LEPTOS_OUTPUT_NAME=ringback LEPTOS_SITE_ROOT=target/site LEPTOS_SITE_PKG_DIR=pkg LEPTOS_HASH_FILES=true
# A loopback port nothing listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits until the server on 127.0.0.1:PORT answers GET /healthz, at most SECONDS (default 10;
# longer under valgrind); fails, saying so, if it never does.
await_server() { # port [seconds]
  for _ in $(seq $(( ${2:-10} * 10 ))); do
    curl -fs "http://127.0.0.1:$1/healthz" >/dev/null && return 0
    sleep 0.1
  done
  echo "the server on port $1 did not start" >&2
  return 1
}
# Starts a release server (SERVER_BIN, this build's by default) on 127.0.0.1:PORT as the load
# scripts run it (no per-address limit, room for 19,000 connections), then FLAGS; waits until it
# answers. Its pid is left in $pid for stop_server.
start_ringback() { # port [flags...]
  local port=$1; shift
  "${SERVER_BIN:-target/release/ringback}" --addr "127.0.0.1:$port" --log warn \
    --data-dir target/bench-data --max-subscribers-per-ip 0 --max-connections 19000 "$@" &
  pid=$!
  await_server "$port"
}
# Stops the server in $pid (started by start_ringback, or any process a script left there).
stop_server() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }
# Appends one load run's figures (the `json` line of the load tool's report OUT) to FILE under
# LABEL, and shows the start of that line.
record_run() { # file label out
  echo "$2 $(echo "$3" | sed -n 's/^json //p')" >>"$1"
  tail -1 "$1" | cut -c1-160 >&2
}
