#!/usr/bin/env bash
# Times the README's main command (2 threads, as the README runs it) as one process on a quiet machine
# and writes its log and one line "RC <exit code> WALL <seconds> s" beside it.
# Usage: bash bench/time_main_command.sh [OUT_DIR]   (default docs/performance; the run goes to OUT_DIR/main_command_run)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/performance}
mkdir -p "$out"
start=$(date +%s)
OMP_NUM_THREADS=2 .venv/bin/python tools/train_net.py --config-file configs/demo_ssl.yaml \
    OUTPUT_DIR "$out/main_command_run" > "$out/main_command.log" 2>&1
rc=$?
echo "RC $rc WALL $(( $(date +%s) - start )) s" | tee "$out/main_command_time.txt"
