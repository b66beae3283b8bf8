"""The plan digest and `apply --expect-plan`: what ties an apply on merge to the plan
reviewed on the pull request. The CLI runs in process against the sandbox."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from reconciler.cli import main
from tests.builders import HUB_YAML

CANARY = "CANARY-digest-7f3a9c"
GCR_KEY = json.dumps({"type": "service_account", "client_email": "ci@acme.iam.gserviceaccount.com",
                      "private_key": CANARY + "-gcr"})
CONFIG = HUB_YAML + """\
  - provider: gcr
    endpoint: gcr.io
    service_account_key: ${GCR_KEY}
    skip_validation: true
"""


@pytest.fixture
def machine(tmp_path, sandbox, monkeypatch, capsys):
    """A checkout on a CI runner: the registries file in a directory of its own, the
    secrets and REGSYNC_STATE_KEY in the environment, the sandbox as the API."""

    class Machine:
        def __init__(self, name: str):
            self.dir = tmp_path / name
            self.dir.mkdir()
            self.config = self.dir / "registries.yaml"
            self.config.write_text(CONFIG)
            self.env = {**sandbox.env(), "DH_TOKEN": CANARY, "GCR_KEY": GCR_KEY,
                        "REGSYNC_STATE_KEY": "k" * 32, "NO_COLOR": "1"}
            self.seen: list[str] = []

        def regsync(self, *args: str, expect: int = 0):
            for name, value in self.env.items():
                monkeypatch.setenv(name, value)
            monkeypatch.chdir(self.dir)
            code = main(list(args))
            out = capsys.readouterr()
            self.seen.append(out.out + out.err)
            assert code == expect, (code, out.out, out.err)
            return out

        def plan_json(self) -> dict:
            return json.loads(self.regsync("plan", "--format", "json").out)

        def digest(self) -> str:
            return self.plan_json()["digest"]

    made: list[Machine] = []

    def make(name: str) -> Machine:
        made.append(Machine(name))
        return made[-1]

    yield make
    for m in made:
        for text in m.seen + [p.read_text() for p in m.dir.rglob("*") if p.is_file() and p.suffix != ".yaml"]:
            assert CANARY not in text


def writes(sandbox) -> int:
    """Calls that change the team (create, update, delete) or test an image."""
    ops = sandbox.stats.by_operation
    return sum(ops[op] for op in ("create", "update", "delete", "test"))


def test_the_same_inputs_give_the_same_digest_on_two_machines_and_in_every_format(machine):
    a, b = machine("runner-a"), machine("runner-b")
    digest = a.digest()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert b.digest() == digest
    text = a.regsync("plan").out.splitlines()
    assert text[-1] == f"Plan digest: {digest}"
    assert text[-2] == "Plan: 2 to add, 0 to change, 0 to destroy."
    md = b.regsync("plan", "--format", "markdown").out
    assert f"<!-- regsync-plan-digest: {digest} -->" in md
    assert md.splitlines()[0] == "<!-- regsync-plan-file: registries.yaml -->"
    assert "**Plan: 2 to add, 0 to change, 0 to destroy.** `registries.yaml`" in md


def test_a_changed_secret_file_or_team_each_change_the_digest(machine, sandbox):
    m = machine("runner")
    first = m.digest()
    m.env["DH_TOKEN"] = CANARY + "-rotated"
    rotated = m.digest()
    assert rotated != first
    m.env["DH_TOKEN"] = CANARY
    assert m.digest() == first
    m.config.write_text(m.config.read_text().replace("username: acme-bot", "username: acme-ci"))
    edited = m.digest()
    assert edited not in (first, rotated)
    # the team gains the registry under the same slug: the create becomes an update
    m.regsync("apply", "--auto-approve", "--target", "hub")
    after_apply = m.digest()
    assert after_apply not in (first, rotated, edited)
    machine("other").regsync("apply", "--auto-approve")  # the other file's username: acme-bot
    assert m.digest() != after_apply


def test_apply_with_a_stale_digest_changes_nothing_and_says_what_differs(machine, sandbox):
    m = machine("runner")
    reviewed = m.regsync("plan", "--format", "markdown").out
    (m.dir / "reviewed.md").write_text(reviewed)
    m.config.write_text(m.config.read_text().replace("username: acme-bot", "username: acme-ci"))
    before = writes(sandbox)
    err = m.regsync("apply", "--auto-approve", "--expect-plan", "reviewed.md", expect=1).err
    assert writes(sandbox) == before
    assert err.startswith("registries.yaml:9:15: warning: ")  # the file's warning, then the error
    err = err.splitlines()[-1]
    assert err.startswith("error: the plan differs from the reviewed plan (reviewed sha256:")
    assert "changed since the review: create hub." in err
    assert "Nothing was changed" in err
    # a bare digest: the message gives the plan now
    digest = re.search(r"sha256:[0-9a-f]{64}", reviewed).group(0)
    err = m.regsync("apply", "--auto-approve", "--expect-plan", digest, expect=1).err
    assert "now: Plan: 2 to add, 0 to change, 0 to destroy." in err
    assert writes(sandbox) == before


def test_apply_with_the_reviewed_digest_applies_it(machine, sandbox):
    m = machine("runner")
    plan = m.plan_json()
    (m.dir / "plan.json").write_text(json.dumps(plan))
    out = m.regsync("apply", "--auto-approve", "--expect-plan", "plan.json", "--report",
                    "summary.md", "--report-format", "markdown").out
    assert "Apply complete: 2 added, 0 changed, 0 destroyed" in out
    summary = (m.dir / "summary.md").read_text().splitlines()
    assert summary[:3] == ["### regsync apply", "",
                           "**Apply complete: 2 added, 0 changed, 0 destroyed; tests: 0 passed, 0 failed.**"]
    assert "| hub | create | ✅ succeeded |  |" in summary
    # nothing left to do: the empty plan has its own digest, and applying it is a no-op
    empty = m.digest()
    assert empty != plan["digest"]
    m.regsync("apply", "--auto-approve", "--expect-plan", empty)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("sha256:abc", "--expect-plan 'sha256:abc': expected sha256: and 64 lowercase hex digits"),
        ("no-such-file.md", "--expect-plan 'no-such-file.md': expected sha256:"),
        ("empty.md", "empty.md: holds no regsync plan digest"),
        ("deep.json", "deep.json: holds no regsync plan digest"),
    ],
)
def test_a_bad_expect_plan_is_one_line_before_any_call(machine, sandbox, value, message):
    m = machine("runner")
    (m.dir / "empty.md").write_text("just a comment\n")
    (m.dir / "deep.json").write_text("[" * 100_000)  # nested past Python's recursion limit
    before = sandbox.stats.requests
    err = m.regsync("apply", "--auto-approve", "--expect-plan", value, expect=1).err
    assert "warning" not in err  # refused before the file is even read
    assert err.startswith(f"error: {message}") and len(err.strip().splitlines()) == 1
    assert sandbox.stats.requests == before


def test_markdown_and_json_plans_show_the_files_warnings_and_old_and_new_values(machine):
    m = machine("runner")
    m.regsync("apply", "--auto-approve")
    m.config.write_text(m.config.read_text().replace("username: acme-bot", "username: acme-ci"))
    data = m.plan_json()
    (hub,) = [c for c in data["changes"] if c["slug"] == "hub"]
    assert hub["changed"][0] == {"field": "username", "old": "acme-bot", "new": "acme-ci"}
    # the credential's entry has its description only: never an old or a new value
    assert all(c == {"field": "credentials", "new": "(changed)"} for c in hub["changed"][1:])
    assert data["file"] == "registries.yaml"
    (warning,) = data["file_warnings"]
    assert warning.startswith("registries.yaml:") and "deprecated" in warning
    md = m.regsync("plan", "--format", "markdown").out.splitlines()
    assert "! update hub (dockerhub)" in md and "!     username: acme-bot -> acme-ci" in md
    i = md.index("> The registries file `registries.yaml` has warnings:")
    assert md[i - 1] == "> [!WARNING]" and md[i + 1] == f"> - {warning}"


def test_two_checkouts_at_different_paths_agree(machine, tmp_path):
    a = machine("a")
    deep = tmp_path / "deep" / "er"
    deep.mkdir(parents=True)
    shutil.copy(a.config, deep / "registries.yaml")
    b = machine("b")
    b.config.write_text(a.config.read_text())
    assert a.digest() == b.digest()
    out = b.regsync("plan", "-c", str(deep / "registries.yaml"), "--format", "json").out
    assert json.loads(out)["digest"] == a.digest()


def test_the_digest_does_not_depend_on_the_order_the_api_lists_the_team_in():
    # The Vendor API documents no order for its list: a pruning plan made on the pull
    # request and the same plan made on merge must agree however the team comes back.
    from reconciler.diff import diff
    from reconciler.digest import plan_digest
    from reconciler.model import Config, Settings
    from reconciler.state import State
    from tests.builders import FP, have, want

    config = Config(path="registries.yaml", settings=Settings(), registries=(want("keep"),))
    team = [have("keep"), have("old-a"), have("old-b", endpoint="quay.io"), have("old-c")]
    plans = [diff(config, listed, State(), FP, prune=True) for listed in (team, team[::-1])]
    assert [c.slug for c in plans[0].pending] == ["keep", "old-a", "old-b", "old-c"]
    assert plan_digest(plans[0], FP) == plan_digest(plans[1], FP)
    unpruned = [diff(config, listed, State(), FP, prune=False) for listed in (team, team[::-1])]
    assert [r.slug for r in unpruned[0].unmanaged] == [r.slug for r in unpruned[1].unmanaged]
