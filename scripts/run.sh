#!/usr/bin/env bash
# The README's run command: installs and builds what is missing, then serves Ringback on the
# embedded default (no Redis) with the demo source on. `scripts/run.sh --no-demo` turns it off;
# other flags are passed to the server (see `--help` of target/release/ringback).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

demo=true
args=()
for a in "$@"; do
  if [ "$a" = "--no-demo" ]; then demo=false; else args+=("$a"); fi
done

scripts/setup.sh

step "building the site and the server (cargo leptos build --release --precompress; minutes the first time)"
cargo leptos build --release --precompress

step "starting Ringback"
export LEPTOS_OUTPUT_NAME=ringback LEPTOS_SITE_ROOT=target/site LEPTOS_SITE_PKG_DIR=pkg \
  LEPTOS_HASH_FILES=true LEPTOS_ENV=PROD
export RINGBACK_DEMO=$demo
exec target/release/ringback "${args[@]}"
