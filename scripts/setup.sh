#!/usr/bin/env bash
# Set up a development machine: Debian's docker-registry (the real OCI registry the
# tests and the demo run) and a virtualenv with regsync and its test dependencies.
# Idempotent; needs root or sudo only to install the Debian package.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else sudo="none"; fi

if ! command -v docker-registry >/dev/null 2>&1; then
  if [ "$sudo" = none ] || ! command -v apt-get >/dev/null 2>&1; then
    if [ -n "${REGSYNC_REGISTRY_OPTIONAL:-}" ]; then
      echo "setup: docker-registry is missing and cannot be installed here (no root/sudo or no apt);" >&2
      echo "setup: the demo falls back to regsync's own read-only demo registry" >&2
    else
      echo "setup: the tests need Debian's docker-registry, and installing it needs root or sudo" >&2
      exit 1
    fi
  else
    echo "setup: installing Debian's docker-registry"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends docker-registry >/dev/null
    # The package enables a service on :5000 on every interface; we never use it.
    $sudo systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
fi

# Debian's shellcheck: actionlint runs it on the workflows' run: blocks.
if ! command -v shellcheck >/dev/null 2>&1; then
  if [ "$sudo" = none ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: shellcheck is missing and cannot be installed here (no root/sudo or no apt);" >&2
    echo "setup: scripts/lint-workflows.sh needs it" >&2
  else
    echo "setup: installing Debian's shellcheck"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
# The editable install follows code changes by itself; pip runs again only when what it
# installed from changed: pyproject.toml (dependencies) or the venv's Python.
stamp=.venv/.regsync-setup-stamp
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $(.venv/bin/python -c 'import sys; print(sys.version)' | head -n1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: .venv is up to date (pyproject.toml unchanged since the last install)"
else
  echo "setup: installing regsync and its test dependencies into .venv (boto3 and SeaweedFS for the state tests)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
  printf '%s\n' "$want" > "$stamp"
fi
