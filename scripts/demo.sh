#!/usr/bin/env bash
# Install drd and run its main job on an embedded default: three local registries on
# loopback, a signed sample set, verified replication, a snapshot to a local folder,
# and a restore drill with its report.
#
#   bash scripts/demo.sh [--keep DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
runtime_packages
venv   # drd and what it needs to run; not the test toolchain (scripts/test.sh adds that)
exec .venv/bin/python scripts/demo.py "$@"
