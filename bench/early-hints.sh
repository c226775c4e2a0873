#!/usr/bin/env bash
# Navigation to first live message in Chromium, with and without 103 Early Hints, over a trusted
# development certificate (see bench/early-hints.mjs). Needs the release build, Chromium,
# certutil (libnss3-tools) and end2end's npm packages (scripts/setup.sh --test).
# Usage: bench/early-hints.sh [rounds]   (default 20: 20 navigations to each server)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
cd "$ROOT"
node bench/early-hints.mjs "${1:-20}"
