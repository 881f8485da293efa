#!/usr/bin/env bash
# The whole test suite: install, lint, type-check, then every test (lab tests included;
# they need root and network namespaces). Extra arguments go to pytest, e.g. `-m "not lab"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check hopcap tests bench
.venv/bin/ruff format --check hopcap tests bench
.venv/bin/mypy hopcap
# (--durations: the slowest tests named, what to look at when the suite grows)
if [ "$#" -gt 0 ]; then
  exec .venv/bin/pytest --durations=25 "$@"
fi
# Every test: the lab tests and the others at once, in two pytest processes. The lab ones
# run one after another as ever (they share the labs they build and the machine's
# namespaces) and mostly wait (windows, SSH, timeouts); the others mostly compute. On two
# cores the suite then takes about as long as its lab part alone. The others' report is
# printed after the lab's.
others=$(mktemp)
trap 'rm -f "$others"' EXIT
# (with job control, a background job keeps Ctrl-C's default handling, which the tests of
# hopcap's own Ctrl-C handling need, in a process group of its own: on Ctrl-C it is
# interrupted here, and its fixtures tear down what they started)
set -m
.venv/bin/pytest -m "not lab" --durations=25 >"$others" 2>&1 &
pid=$!
set +m
trap 'kill -INT -- "-$pid" 2>/dev/null; wait "$pid"; exit 130' INT TERM
lab_rc=0
.venv/bin/pytest -m lab --durations=25 || lab_rc=$?
others_rc=0
wait "$pid" || others_rc=$?
echo
echo "---------------- the tests not marked lab (run beside the lab tests) ----------------"
cat "$others"
echo
echo "test.sh: lab tests exit ${lab_rc}, the others exit ${others_rc}"
[ "$lab_rc" -eq 0 ] && [ "$others_rc" -eq 0 ]
