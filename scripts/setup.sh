#!/usr/bin/env bash
# Installs what Ringback needs, and nothing that is already there.
#
#   scripts/setup.sh          tools to build and run the app
#   scripts/setup.sh --test   also what the tests need (Chromium, redis-server, redis-sentinel, nghttp,
#                             Playwright)
#
# Each step checks first and prints a line only when it has work to do, so a second run is quiet.
# A first run on a bare machine takes many minutes, mostly compiling cargo-leptos.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

want_test=false
[ "${1:-}" = "--test" ] && want_test=true

step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
quietly() { # run a command, showing its output only if it fails
  local log; log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then cat "$log" >&2; rm -f "$log"; return 1; fi
  rm -f "$log"
}

CARGO_LEPTOS_VERSION=0.3.11
TOOLCHAIN=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)

# 1. The pinned Rust toolchain (RUSTUP_AUTO_INSTALL=0 here, so nothing installs it implicitly).
if ! rustup toolchain list | grep -q "^$TOOLCHAIN"; then
  step "installing Rust $TOOLCHAIN with the wasm32 target, clippy and rustfmt (~1 min)"
  quietly rustup toolchain install
elif ! rustup target list --installed --toolchain "$TOOLCHAIN" | grep -q wasm32-unknown-unknown \
   || [ "$(rustup component list --installed --toolchain "$TOOLCHAIN" | grep -cE '^(clippy|rustfmt)')" -lt 2 ]; then
  step "adding the wasm32 target and the clippy and rustfmt components to Rust $TOOLCHAIN"
  quietly rustup toolchain install
fi

# 2. Debian packages: only for tests (Chromium, redis-server, redis-sentinel for the failover
#    test, nghttp/h2load, curl, procps's
#    `kill`, which the fault tests use to send SIGTERM and SIGKILL to a server process, and
#    libnss3-tools's `certutil`, with which the Early Hints test makes Chromium trust the
#    server's development certificate authority, and python3 for the docs' checks).
if $want_test; then
  missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
  command -v nghttp >/dev/null || missing+=(nghttp2-client)
  command -v curl >/dev/null || missing+=(curl)
  [ -x /bin/kill ] || [ -x /usr/bin/kill ] || missing+=(procps)
  command -v certutil >/dev/null || missing+=(libnss3-tools)
  command -v python3 >/dev/null || missing+=(python3)
  if [ ${#missing[@]} -gt 0 ]; then
    step "installing Debian packages: ${missing[*]} (~2 min)"
    sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd=sudo
    quietly $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive quietly $sudo_cmd apt-get install -y -qq "${missing[@]}"
  fi
fi

# 3. cargo-leptos, built without its downloader: this machine cannot fetch its helpers.
if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
  step "building cargo-leptos $CARGO_LEPTOS_VERSION (~13 min on 2 cores, once)"
  quietly cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked --features no_downloads
fi

# 4. The wasm-bindgen CLI, exactly the version of the wasm-bindgen crate in Cargo.lock.
WB_VERSION=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
if ! wasm-bindgen --version 2>/dev/null | grep -q " $WB_VERSION\$"; then
  step "building wasm-bindgen-cli $WB_VERSION (~3 min, once)"
  # Not --locked: its lock file names a webpki-roots release the index no longer has.
  quietly cargo install wasm-bindgen-cli --version "$WB_VERSION" --force
fi

# 5. sass and wasm-opt (npm's binaryen: Debian's is too old for this wasm-bindgen's output).
if [ ! -x tools/node_modules/.bin/sass ] || [ ! -x tools/node_modules/.bin/wasm-opt ] \
   || [ tools/package-lock.json -nt tools/node_modules/.package-lock.json ]; then
  step "installing sass and wasm-opt from npm"
  (cd tools && if [ -f package-lock.json ]; then quietly npm ci; else quietly npm install; fi)
fi

# 6. Playwright's test runner (the browser is Debian's Chromium, never downloaded).
if $want_test; then
  if [ ! -d end2end/node_modules/@playwright/test ] \
     || [ end2end/package-lock.json -nt end2end/node_modules/.package-lock.json ]; then
    step "installing Playwright's test runner from npm"
    (cd end2end && if [ -f package-lock.json ]; then quietly npm ci; else quietly npm install; fi)
  fi
fi
