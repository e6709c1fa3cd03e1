#!/usr/bin/env bash
# The test command: creates/uses .venv, installs seqkit with its test extra, runs pytest.
# Usage: bash scripts/test.sh [pytest arguments]
#
# With no arguments (the README's test command; CI runs exactly this), after the
# whole suite on this machine's default compute path it runs the tests marked
# `compute_path` (the kernels, the layers' training paths, every learning test)
# again under each other path this machine can build: each other kernel ISA
# (SEQKIT_KERNEL_ISA=avx2, generic, ...) and the XLA loops (SEQKIT_KERNELS=0).
# Results differ across paths within float32 rounding, so a learned result must
# hold on every one of them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv ".[test]"
if [ $# -gt 0 ]; then
    exec .venv/bin/python -m pytest "$@"
fi
# Each pass runs its test files on WORKERS processes (pytest-xdist, one file per worker at a
# time, so a module's fixtures are built once): a core each, at most 4 (SEQKIT_TEST_WORKERS
# overrides; 0 runs in this process). Most tests wait on Python, tracing and subprocesses, so two
# processes on two cores take about 0.65x the time of one.
cores=$(.venv/bin/python -c 'import os; print(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())')
workers=${SEQKIT_TEST_WORKERS:-$(( cores < 4 ? cores : 4 ))}
[ "$workers" -ge 2 ] || workers=0
parallel=(-n "$workers" --dist loadfile)
status=0
.venv/bin/python -m pytest "${parallel[@]}" --durations=15 || status=$?
others=$(.venv/bin/python -c 'from seqkit import kernels; print(" ".join(i for i in kernels.cpu_isas() if i != kernels.isa()))')
for isa in $others; do
    echo "== the compute_path tests with the kernels built for $isa (SEQKIT_KERNEL_ISA=$isa)"
    SEQKIT_KERNEL_ISA=$isa .venv/bin/python -m pytest "${parallel[@]}" -m compute_path -q || status=$?
done
echo "== the compute_path tests on the XLA loops (SEQKIT_KERNELS=0)"
SEQKIT_KERNELS=0 .venv/bin/python -m pytest "${parallel[@]}" -m compute_path -q || status=$?
exit $status
