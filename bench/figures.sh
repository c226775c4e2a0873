#!/usr/bin/env bash
# Redraws the figures of BENCHMARKS.md (docs/figures/*.svg) from the recorded figures in
# bench/results/*.json, with python3's standard library only (bench/plot.py). Builds and runs
# nothing else. After a benchmark run, put its figures (the load tool's `json` lines, with the
# fields each file's "fields" describes) and its "source" (command, date, machine) into the
# JSON file, then run this.
# Usage: bench/figures.sh [FIGURE ...]   (default: all: fanout-latency fanout-shapes memory rate attacks redis)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python3 bench/plot.py "$@"
