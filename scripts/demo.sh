#!/usr/bin/env bash
# Set up (see setup.sh), then run regsync end to end against a local sandbox and a
# private registry on 127.0.0.1: validate, plan, apply with image tests, plan again.
set -euo pipefail
cd "$(dirname "$0")/.."
REGSYNC_REGISTRY_OPTIONAL=1 bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py
