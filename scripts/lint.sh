#!/usr/bin/env bash
# Lint the Python code: ruff (the rules in pyproject.toml, over the whole tree) and mypy
# (the reconciler package, as configured there), with the versions setup.sh installs.
# Both always run, so one run shows every problem; the exit code is 1 if either failed.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
for tool in ruff mypy; do
  if [ ! -x "$bin/$tool" ]; then
    echo "lint: $bin/$tool is missing; run scripts/setup.sh" >&2
    exit 1
  fi
done
status=0
"$bin/ruff" check . || status=1
"$bin/mypy" || status=1
if [ "$status" -ne 0 ]; then
  echo "lint: ruff or mypy found problems (above)" >&2
  exit 1
fi
echo "lint: ruff and mypy are clean"
