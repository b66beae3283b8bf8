#!/usr/bin/env bash
# The steps of regsync's GitHub Action (action.yml): `install`, then `run`.
#
# Inputs come as environment variables (INPUT_*), never spliced into the script, and
# are never echoed: secrets reach regsync through the job's environment only. Outputs
# go to $GITHUB_OUTPUT, the plan or the apply result to $GITHUB_STEP_SUMMARY.
set -euo pipefail

install() {
  local venv="${RUNNER_TEMP:?}/regsync-venv" spec="${ACTION_PATH:?}"
  if [ -n "${INPUT_EXTRAS:-}" ]; then
    if ! [[ "$INPUT_EXTRAS" =~ ^[a-z0-9,-]+$ ]]; then
      echo "regsync: the extras input is a comma-separated list of names (e.g. s3)" >&2
      return 1
    fi
    spec="${spec}[${INPUT_EXTRAS}]"
  fi
  python -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$spec"
  echo "$venv/bin" >>"${GITHUB_PATH:?}"
}

output() { # NAME VALUE: one line each, so no value can add another output
  printf '%s=%s\n' "$1" "${2//$'\n'/ }" >>"${GITHUB_OUTPUT:?}"
}

plan_digest() { # FILE: the digest on regsync's own marker line (a value shown in the plan may look alike)
  grep -m 1 -oE '^<!-- regsync-plan-digest: sha256:[0-9a-f]{64} -->[[:space:]]*$' "$1" | grep -oE 'sha256:[0-9a-f]{64}' || true
}

refused() { # SUMMARY REPORT: every output set when the step stops before regsync runs
  output exitcode 1
  output changes false
  output summary "$1"
  output digest ""
  output report "$2"
}

fence() { # a code fence longer than any run of backticks in FILE
  local longest
  longest=$(grep -o '`*' "$1" | awk '{ if (length($0) > n) n = length($0) } END { print n + 0 }')
  if [ "$longest" -lt 3 ]; then longest=2; fi
  printf '%*s' "$((longest + 1))" '' | tr ' ' '`'
}

failed_body() { # WHAT CONFIG LOG_FILE [END]: markdown saying WHAT for CONFIG, with the log
  local f
  f=$(fence "$3")
  # shellcheck disable=SC2016  # the backticks are markdown, not a command substitution
  printf '**%s** for `%s`%s\n\n%stext\n' "$1" "$2" "${4:-.}" "$f"
  cat "$3"
  printf '%s\n' "$f"
}

failed_plan_body() { # CONFIG STDERR_FILE: the comment that replaces the plan when plan fails
  failed_body "regsync plan failed" "$1" "$2" ": there is no plan to apply."
}

run() {
  local command="${INPUT_COMMAND:?}" config="${INPUT_CONFIG:-registries.yaml}"
  local out="${RUNNER_TEMP:?}/regsync"
  local -a extra=()
  read -r -a extra <<<"${INPUT_ARGS:-}"
  mkdir -p "$out"
  local code=0 summary="" changes=false digest="" report="$out/$command.log"

  case "$command" in
    validate)
      regsync validate "$config" "${extra[@]}" >"$report" 2>&1 || code=$?
      cat "$report"
      summary=$(tail -n 1 "$report")
      ;;
    plan)
      regsync plan -c "$config" --format markdown --detailed-exitcode "${extra[@]}" \
        >"$out/plan.md" 2>"$out/plan.err" || code=$?
      cat "$out/plan.err" "$out/plan.md" >"$report"
      cat "$report"
      if [ "$code" = 0 ] || [ "$code" = 2 ]; then
        [ "$code" = 2 ] && changes=true
        summary=$(grep -m 1 -oE '^\*\*(Plan: [^*]+|No changes\.)\*\*' "$out/plan.md" | tr -d '*' || true)
        [ "$summary" = "No changes." ] && summary="No changes. The team's registries match the file."
        digest=$(plan_digest "$out/plan.md")
        cp "$out/plan.md" "$out/comment.md"
      else
        summary="regsync plan failed"
        failed_plan_body "$config" "$out/plan.err" >"$out/comment.md"
      fi
      cat "$out/comment.md" >>"${GITHUB_STEP_SUMMARY:-/dev/null}"
      ;; # the comment is posted below, once the outputs are set
    apply)
      local -a expect=()
      if [ "${INPUT_REQUIRE_REVIEWED_PLAN:-true}" != false ]; then
        if ! regsync github reviewed-plan --commit "${GITHUB_SHA:?}" --config "$config" \
          --out "$out/reviewed.md" --author "${INPUT_COMMENT_AUTHOR:-github-actions[bot]}" 2>"$report"; then
          echo "regsync: apply refused: no reviewed plan (set require-reviewed-plan: false to apply without one)" >>"$report"
          cat "$report" >&2
          failed_body "regsync apply refused" "$config" "$report" >>"${GITHUB_STEP_SUMMARY:-/dev/null}"
          refused "regsync apply refused: no reviewed plan" "$report"
          return 1
        fi
        cat "$report" >&2
        expect=(--expect-plan "$out/reviewed.md")
        digest=$(plan_digest "$out/reviewed.md")
      fi
      regsync apply -c "$config" --auto-approve "${expect[@]}" --report "$out/apply.md" \
        --report-format markdown "${extra[@]}" >"$report" 2>&1 || code=$?
      cat "$report"
      summary=$(grep -E '^Apply (complete|failed):' "$report" | tail -n 1 || true)
      if [ -z "$summary" ] && [ "$code" != 0 ]; then # refused, or stopped, before the summary
        summary="regsync apply failed"
        digest=""
        failed_body "regsync apply failed" "$config" "$report" >>"${GITHUB_STEP_SUMMARY:-/dev/null}"
      fi
      if grep -qE '^Apply (complete|failed):.* [1-9][0-9]* (added|changed|destroyed)' <<<"$summary"; then
        changes=true
      fi
      if [ -f "$out/apply.md" ] && [ -s "$out/apply.md" ]; then
        cat "$out/apply.md" >>"${GITHUB_STEP_SUMMARY:-/dev/null}"
      fi
      ;;
    test)
      regsync test -c "$config" "${extra[@]}" >"$report" 2>&1 || code=$?
      cat "$report"
      summary=$(grep -E '^tests: ' "$report" | tail -n 1 || true)
      ;;
    *)
      echo "regsync: the command input must be validate, plan, apply or test" >&2
      refused "" ""
      return 1
      ;;
  esac

  output exitcode "$code"
  output changes "$changes"
  output summary "$summary"
  output digest "$digest"
  output report "$report"
  if [ "$command" = plan ] && [ "${INPUT_COMMENT:-true}" = true ] && [ -n "${PR_NUMBER:-}" ]; then
    regsync github comment --pr "$PR_NUMBER" --config "$config" --body-file "$out/comment.md" \
      --author "${INPUT_COMMENT_AUTHOR:-github-actions[bot]}" || return 1
  fi
  if [ "$code" = 0 ] || { [ "$command" = plan ] && [ "$code" = 2 ]; }; then
    return 0
  fi
  return 1
}

case "${1:-}" in
  install) install ;;
  run) run ;;
  *) echo "usage: action.sh install|run" >&2; exit 1 ;;
esac
