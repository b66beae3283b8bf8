"""action.yml and the example workflows say what README promises: the inputs and
outputs, minimal permissions, pinned third-party actions, the shared state.
(actionlint, zizmor and shellcheck run on them in scripts/lint-workflows.sh.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples" / "github-actions").glob("*.yml"))
USES = re.compile(r"uses:\s*(\S+)(.*)$")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_the_action_has_the_documented_inputs_and_outputs():
    action = load(ROOT / "action.yml")
    assert action["runs"]["using"] == "composite"
    assert {"command", "config", "args", "comment", "python-version", "require-reviewed-plan"} <= set(action["inputs"])
    assert action["inputs"]["config"]["default"] == "registries.yaml"
    assert action["inputs"]["comment"]["default"] == "true"
    assert {"exitcode", "changes", "summary", "digest"} <= set(action["outputs"])
    # no input reaches a script through ${{ }}: every run: line is a fixed command
    for step in action["runs"]["steps"]:
        assert "${{" not in step.get("run", "")


@pytest.mark.parametrize("path", [ROOT / "action.yml", *EXAMPLES], ids=lambda p: p.name)
def test_every_third_party_action_is_pinned_to_a_full_sha_with_its_version(path):
    found = 0
    for line in path.read_text().splitlines():
        match = USES.search(line)
        if not match or match.group(1).startswith("./"):
            continue
        found += 1
        ref, comment = match.group(1), match.group(2)
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), line
        assert re.fullmatch(r"\s*# v\d+(\.\d+)*", comment), line
    assert found


def _jobs():
    for path in EXAMPLES:
        for name, job in load(path)["jobs"].items():
            yield path.name, name, job


def test_each_job_has_minimal_permissions_and_the_shared_state():
    workflows = {path.name: load(path) for path in EXAMPLES}
    assert set(workflows) == {"pull-request.yml", "merge.yml", "nightly.yml"}
    for wf in workflows.values():
        assert wf["permissions"] == {}  # nothing by default; each job asks for its own
    perms = {file: job["permissions"] for file, _, job in _jobs()}
    assert perms["pull-request.yml"] == {"contents": "read", "pull-requests": "write"}
    assert perms["merge.yml"] == {"contents": "write", "pull-requests": "read"}
    assert perms["nightly.yml"] == {"contents": "read", "issues": "write"}
    for _, _, job in _jobs():
        assert job["env"]["REGSYNC_STATE"] == "git:regsync-state"
        assert job["env"]["REGSYNC_STATE_KEY"] == "${{ secrets.REGSYNC_STATE_KEY }}"
        assert job["timeout-minutes"] <= 30
    merge = workflows["merge.yml"]
    assert merge["concurrency"] == {"group": "regsync-apply", "cancel-in-progress": False}
    assert merge["jobs"]["apply"]["environment"] == "regsync-apply"


def test_gitlab_applies_the_plan_it_showed_one_at_a_time():
    ci = load(ROOT / "examples" / "gitlab-ci.yml")
    assert ci["variables"]["REGSYNC_STATE"] == "git:regsync-state"
    apply = ci["apply"]
    assert apply["resource_group"] == "regsync-apply" and apply["needs"] == ["plan-main"]
    assert any("--expect-plan plan.md" in line for line in apply["script"])
    assert ci["plan"]["artifacts"]["paths"] == ["plan.md"]


def test_the_required_plan_check_runs_on_every_pull_request():
    # README has branch protection require the check "regsync plan". A workflow skipped
    # by a paths: filter leaves its required check pending, so a pull request that does
    # not touch registries.yaml could never merge.
    wf = load(ROOT / "examples" / "github-actions" / "pull-request.yml")
    trigger = wf[True]  # YAML 1.1 reads the key `on` as True
    assert set(trigger) == {"pull_request"}
    assert not (trigger["pull_request"] or {}).get("paths")
    assert wf["jobs"]["plan"]["name"] == "regsync plan"
