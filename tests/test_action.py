"""The Action's script (scripts/action.sh, what action.yml runs) as a runner runs it: the
environment GitHub gives a step, regsync on PATH, the sandbox as the Vendor API and the
local GitHub stand-in (tests/fixtures/github.py) for the comment and the reviewed plan."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.builders import HUB_YAML
from tests.fixtures.github import BOT, REPO

ROOT = Path(__file__).resolve().parent.parent
CANARY = "CANARY-action-51c0"
SHA = "abcdefabcdefabcdefabcdefabcdefabcdefabcd"


@pytest.fixture
def runner(tmp_path, sandbox, github_server):
    class Runner:
        repo = tmp_path / "repo"
        temp = tmp_path / "runner-temp"
        seen: list[str] = []

        def __init__(self):
            self.repo.mkdir()
            self.temp.mkdir()
            (self.repo / "registries.yaml").write_text(HUB_YAML)
            self.pr = github_server.add_issue(title="registries", pull=True)

        def step(self, command: str, *, pr: int | None = None, sha: str = SHA,
                 argv: list[str] | None = None, env: dict[str, str] | None = None, **inputs: str):
            """One run of the action's step (or of ``argv``, a workflow's own step, with
            ``env`` added); returns (exit code, outputs, stdout and stderr)."""
            outputs, summary = self.temp / "output", self.temp / "summary"
            outputs.write_text("")
            env = {
                **(env or {}),
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "HOME": str(tmp_path),
                "RUNNER_TEMP": str(self.temp),
                "GITHUB_OUTPUT": str(outputs),
                "GITHUB_STEP_SUMMARY": str(summary),
                "GITHUB_SHA": sha,
                "PR_NUMBER": str(pr or ""),
                "INPUT_COMMAND": command,
                **{f"INPUT_{k.upper()}": v for k, v in inputs.items()},
                **github_server.env(),
                **sandbox.env(),
                "REGSYNC_STATE_KEY": "a" * 32,
                "DH_TOKEN": CANARY,
                "NO_COLOR": "1",
            }
            proc = subprocess.run(argv or ["bash", str(ROOT / "scripts" / "action.sh"), "run"], cwd=self.repo,
                                  env=env, capture_output=True, text=True, timeout=120)
            got = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
            self.seen += [proc.stdout, proc.stderr, outputs.read_text(),
                          summary.read_text() if summary.exists() else ""]
            return proc.returncode, got, proc.stdout + proc.stderr

        def comment(self) -> str:
            (only,) = list(github_server.comments_on(self.pr))
            return only["body"]

    r = Runner()
    yield r
    for text in r.seen + [c["body"] for c in github_server.comments.values()]:
        assert CANARY not in text


def writes(sandbox) -> int:
    ops = sandbox.stats.by_operation
    return sum(ops[op] for op in ("create", "update", "delete"))


def test_plan_comments_once_across_runs_and_apply_on_merge_applies_the_reviewed_plan(
    runner, github_server, sandbox
):
    for _ in range(3):
        code, out, log = runner.step("plan", pr=runner.pr)
        assert code == 0, log
    assert out["exitcode"] == "2" and out["changes"] == "true"
    assert out["summary"] == "Plan: 1 to add, 0 to change, 0 to destroy."
    assert out["digest"].startswith("sha256:") and len(out["digest"]) == 71
    body = runner.comment()  # one comment, updated in place
    assert f"<!-- regsync-plan-digest: {out['digest']} -->" in body
    assert "+ create hub (dockerhub)" in body
    assert (runner.temp / "summary").read_text().count("**Plan: 1 to add") == 3
    reviewed = out["digest"]

    github_server.merge(runner.pr, SHA)
    code, out, log = runner.step("apply", comment_author=BOT)
    assert code == 0, log
    assert out["summary"] == "Apply complete: 1 added, 0 changed, 0 destroyed; tests: 0 passed, 0 failed."
    assert out["changes"] == "true" and out["digest"] == reviewed
    assert "| hub | create | ✅ succeeded |  |" in (runner.temp / "summary").read_text()

    code, out, log = runner.step("plan", pr=runner.pr)
    assert (code, out["exitcode"], out["changes"]) == (0, "0", "false"), log
    assert out["summary"] == "No changes. The team's registries match the file."
    assert runner.comment().splitlines()[1].startswith("**No changes.**")


def test_apply_refuses_without_a_reviewed_plan_or_when_the_plan_moved(runner, github_server, sandbox):
    code, out, log = runner.step("apply")
    # every output is set, so `if: steps.apply.outputs.changes == 'false'` holds
    assert code == 1 and out == {"exitcode": "1", "changes": "false", "digest": "",
                                 "summary": "regsync apply refused: no reviewed plan",
                                 "report": out["report"]}
    assert "no reviewed plan for registries.yaml" in log
    assert "set require-reviewed-plan: false to apply without one" in log
    assert "set require-reviewed-plan: false" in Path(out["report"]).read_text()
    summary = (runner.temp / "summary").read_text()  # the job summary says why, too
    assert summary.startswith("**regsync apply refused** for `registries.yaml`.\n\n```text\n")
    assert "no reviewed plan for registries.yaml" in summary
    assert writes(sandbox) == 0

    runner.step("plan", pr=runner.pr)
    github_server.merge(runner.pr, SHA)
    config = runner.repo / "registries.yaml"
    config.write_text(config.read_text().replace("acme-bot", "acme-ci"))  # merged after the review
    code, out, log = runner.step("apply")
    assert code == 1 and out["exitcode"] == "1"
    assert "the plan differs from the reviewed plan" in log and "changed since the review: create hub" in log
    # nothing was applied: no digest "that was applied", and a summary that says so
    assert (out["changes"], out["digest"], out["summary"]) == ("false", "", "regsync apply failed")
    assert "**regsync apply failed** for `registries.yaml`." in (runner.temp / "summary").read_text()
    assert writes(sandbox) == 0

    code, out, log = runner.step("apply", require_reviewed_plan="false")
    assert code == 0 and out["summary"].startswith("Apply complete: 1 added"), log


def test_a_failed_plan_replaces_the_comment_and_leaves_nothing_to_apply(runner, github_server, sandbox):
    runner.step("plan", pr=runner.pr)
    (runner.repo / "registries.yaml").write_text("version: 1\nregistries:\n  - provider: nope\n")
    code, out, log = runner.step("plan", pr=runner.pr)
    assert code == 1 and out["exitcode"] == "1" and out["summary"] == "regsync plan failed"
    body = runner.comment()
    assert body.splitlines()[1] == "**regsync plan failed** for `registries.yaml`: there is no plan to apply."
    assert "regsync-plan-digest" not in body and "registries.yaml:3:" in body
    github_server.merge(runner.pr, SHA)
    (runner.repo / "registries.yaml").write_text(HUB_YAML)
    code, out, log = runner.step("apply")
    assert code == 1 and "holds no regsync plan digest" in log
    assert writes(sandbox) == 0


def test_a_plan_whose_comment_fails_fails_the_step_with_its_outputs_set(runner, github_server):
    # e.g. a workflow without pull-requests: write: the plan is made, the comment refused
    github_server.fail("GET", r"/comments$", 403, body={"message": "Resource not accessible by integration"})
    code, out, log = runner.step("plan", pr=runner.pr)
    assert code == 1, log
    assert "forbidden (403: Resource not accessible by integration)" in log
    assert (out["exitcode"], out["changes"]) == ("2", "true")
    assert out["summary"] == "Plan: 1 to add, 0 to change, 0 to destroy." and out["digest"].startswith("sha256:")
    assert "**Plan: 1 to add" in (runner.temp / "summary").read_text()


def test_the_digest_output_is_the_plans_not_a_value_that_looks_like_one(runner, github_server):
    # a username from the file is shown in the plan; only regsync's own marker line counts
    fake = "sha256:" + "0" * 64
    config = runner.repo / "registries.yaml"
    config.write_text(config.read_text().replace("username: acme-bot", f'username: "regsync-plan-digest: {fake}"'))
    code, out, log = runner.step("plan", pr=runner.pr)
    assert code == 0, log
    assert fake in runner.comment()
    real = re.search(r"^<!-- regsync-plan-digest: (sha256:[0-9a-f]{64}) -->$", runner.comment(), re.M).group(1)
    assert out["digest"] == real != fake
    github_server.merge(runner.pr, SHA)
    code, out, log = runner.step("apply")
    assert code == 0 and out["digest"] == real, log


def test_validate_and_a_bad_command(runner):
    code, out, log = runner.step("validate")
    assert (code, out["exitcode"], out["summary"]) == (0, "0", "1 file valid")
    code, out, log = runner.step("deploy")
    assert code == 1 and "the command input must be validate, plan, apply or test" in log
    assert (out["exitcode"], out["changes"], out["digest"]) == ("1", "false", "")


def test_the_nightly_workflow_opens_one_issue_updates_it_and_closes_it(runner, github_server, registry_basic):
    """The nightly job as nightly.yml has it: the action's test and plan steps, then the
    workflow's own step that decides healthy or failed and runs regsync github health-issue."""
    import yaml

    nightly = yaml.safe_load((ROOT / "examples" / "github-actions" / "nightly.yml").read_text())
    last = nightly["jobs"]["check"]["steps"][-1]
    assert last["if"] == "always()"
    reg = registry_basic
    (runner.repo / "registries.yaml").write_text(
        "version: 1\nregistries:\n  - provider: other\n    slug: demo\n"
        f"    endpoint: {reg.endpoint}\n    username: {reg.username}\n"
        "    password: ${REG_PASSWORD}\n    tests: [test/hello:v1]\n"
    )
    secret = {"REG_PASSWORD": reg.password}

    def night(n: int) -> list[dict]:
        _, tested, _ = runner.step("test", env=secret)
        _, drift, _ = runner.step("plan", comment="false", env=secret)
        env = {**secret, "TEST_EXIT": tested["exitcode"], "PLAN_EXIT": drift["exitcode"],
               "TEST_REPORT": tested["report"], "PLAN_REPORT": drift["report"],
               "RUN_URL": f"https://github.test/{REPO}/actions/runs/{n}"}
        code, _, log = runner.step("", argv=["bash", "-e", "-o", "pipefail", "-c", last["run"]], env=env)
        assert code == 0, log
        return [i for i in github_server.issues.values() if "pull_request" not in i]

    (opened,) = night(1)  # the team lacks the registry: its test fails, the plan has drift
    assert opened["state"] == "open" and "Plan: 1 to add" in opened["body"]
    assert "actions/runs/1" in opened["body"]
    assert night(2) == [opened] and "actions/runs/2" in github_server.issues[opened["number"]]["body"]
    assert len(github_server.comments_on(opened["number"])) == 1  # "Still failing"

    code, out, log = runner.step("apply", require_reviewed_plan="false", env=secret)
    assert code == 0 and out["summary"].startswith("Apply complete: 1 added"), log
    (closed,) = night(3)
    assert closed["number"] == opened["number"] and closed["state"] == "closed"

    # drift alone fails the check: the file now differs from the team, whose pulls still work
    config = runner.repo / "registries.yaml"
    config.write_text(config.read_text().replace(f"username: {reg.username}", "username: someone-else"))
    reopened = [i for i in night(4) if i["state"] == "open"]
    assert len(reopened) == 1 and reopened[0]["number"] != opened["number"]
    assert "Plan: 0 to add, 1 to change" in reopened[0]["body"] and "tests: 1 passed" in reopened[0]["body"]
    assert reg.password not in "".join(runner.seen + [i["body"] for i in github_server.issues.values()])
