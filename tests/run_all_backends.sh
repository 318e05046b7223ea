#!/usr/bin/env bash
# The test command of the README and of CI: the whole suite on TensorFlow, then the part that CI repeats on
# every backend (CROSS_BACKEND in tests/conftest.py) on JAX and on PyTorch, each in its own pytest process
# (Keras reads KERAS_BACKEND once per process), each run spread over $TEST_WORKERS pytest-xdist processes
# (default 2). Extra arguments go to every run, e.g. -x or -k NAME.
# Exit status: 0 when every run passed (pytest's 5, "no tests collected", counts as passed: an -k that selects
# nothing cross-backend is not a failure), else the status of the first run that failed; all three always run.
set -u
cd "$(dirname "$0")/.."
python="${PYTHON:-python}"
workers="${TEST_WORKERS:-2}"  # pytest-xdist processes per run (2 cores: 2)
status=0

run() {
    echo "== pytest --backend $*"
    # --dist worksteal: a worker that has run out takes tests queued for the other (with xdist's default, "load",
    # one worker was still running the long fresh-process tests ~110 s after the other had finished);
    # --durations=15: the 15 slowest tests of each run, for the suite time
    "$python" -m pytest -q -n "$workers" --dist worksteal --durations=15 --backend "$@"
    local code=$?
    if [ "$code" -ne 0 ] && [ "$code" -ne 5 ] && [ "$status" -eq 0 ]; then
        status=$code
    fi
}

run tensorflow "$@"
run jax --cross-backend "$@"
run torch --cross-backend "$@"
exit "$status"
