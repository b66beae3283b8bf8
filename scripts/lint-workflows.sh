#!/usr/bin/env bash
# Lint the GitHub Action and the example workflows: actionlint (with shellcheck for the
# run: blocks), zizmor (offline), and shellcheck for the action's script.
#
# actionlint checks workflows, and a local action through the workflows that use it: so
# the examples are linted in a scratch copy where `uses: OWNER/regsync@...` becomes
# `uses: ./`, which makes actionlint read action.yml and check every `with:` against
# its inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
for tool in "$bin/actionlint" "$bin/zizmor" shellcheck; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "lint-workflows: $tool is missing; run scripts/setup.sh" >&2
    exit 1
  fi
done

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/.github/workflows" "$scratch/scripts"
cp action.yml "$scratch/"
cp scripts/action.sh "$scratch/scripts/"
for f in examples/github-actions/*.yml; do
  sed -E 's#uses: OWNER/regsync@[0-9a-f]{40}( \# v[0-9.]+)?#uses: ./#' "$f" \
    >"$scratch/.github/workflows/$(basename "$f")"
done
git init -q "$scratch" # actionlint resolves `uses: ./` from the repository's root
(cd "$scratch" && "$OLDPWD/$bin/actionlint" -shellcheck shellcheck -pyflakes= .github/workflows/*.yml)
"$bin/zizmor" --offline --no-progress action.yml examples/github-actions/*.yml
shellcheck scripts/action.sh scripts/lint-workflows.sh scripts/lint.sh
echo "lint-workflows: actionlint, zizmor and shellcheck are clean"
