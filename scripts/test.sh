#!/usr/bin/env bash
# The whole test suite: install, lint, type-check, then every test (lab tests included;
# they need root and network namespaces). Extra arguments go to pytest, e.g. `-m "not lab"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check hopcap tests bench
.venv/bin/ruff format --check hopcap tests bench
.venv/bin/mypy hopcap
.venv/bin/pytest --durations=25 "$@"  # (the slowest tests named: what to look at when CI grows)
