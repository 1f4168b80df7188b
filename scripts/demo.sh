#!/usr/bin/env bash
# Main job: simulate a session, write it to NWB, train POYO, decode held-out time,
# write the predictions into the NWB file, save a plot and print R².
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/python -m spikeinterface_poyo demo "$@"
