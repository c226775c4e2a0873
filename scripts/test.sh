#!/usr/bin/env bash
# The README's test command: installs what the tests need (quietly when it is already there),
# builds once, and runs every check: the docs' links and configuration table, formatting and
# lints, Rust unit and integration tests, then Playwright.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

scripts/setup.sh --test

step "building the site and the server (cargo leptos build --release --precompress)"
cargo leptos build --release --precompress

step "docs: links resolve, README ≤ 200 lines, the configuration table matches --help"
python3 scripts/check-docs.py
RINGBACK_BIN=target/release/ringback python3 scripts/check-config-doc.py

step "format and lints (rustfmt, clippy with the workspace lints)"
cargo fmt --all --check
cargo clippy -p app -p server -p ringback-bench -p ringback-test-support --all-targets -- -D warnings

step "Rust unit and integration tests"
cargo test -p app -p server -p ringback-bench -p ringback-test-support

step "end-to-end tests (Playwright, Chromium)"
(cd end2end && npx playwright test)
