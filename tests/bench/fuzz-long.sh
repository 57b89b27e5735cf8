#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Benchmark-length fuzzing, not a test tier: every fuzz target for 10 million executions (or
# --runs N), one after the other, niced. Prints executions, crashes and coverage per target; a
# crashing input is kept in build/fuzz-artifacts. --max-time SECONDS bounds each target on a shared
# machine: the line then says how far it got.
#
#   tests/bench/fuzz-long.sh [--runs N] [--max-time SECONDS] [TARGET...]
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
exec nice "$top/tests/fuzz/run.sh" --runs 10000000 --artifacts "$top/build/fuzz-artifacts" "$@"
