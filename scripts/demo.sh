#!/usr/bin/env bash
# The demo: install, build the lab, run hopcap on the lab's inventory with a curl repro.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/hopcap lab up
.venv/bin/hopcap run --inventory /var/tmp/hopcap-lab-hc/inventory.yml --out "hopcap-run-demo-$(date +%Y%m%d-%H%M%S)"
