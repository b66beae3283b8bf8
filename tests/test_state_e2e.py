"""A team's shared state, end to end: the real CLI (subprocesses) on separate checkouts
standing for CI runners and laptops, against the sandbox, with the state in git (a real
bare repository) or in S3 (a real SeaweedFS), or in a local file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from tests.fixtures.sandbox import READONLY_TOKEN, TOKEN

CANARY = f"CANARY-{uuid.uuid4().hex}"
KEY = "state-key-" + uuid.uuid4().hex


def registries_file(n: int, state: str | None = None) -> str:
    lines = ["version: 1"]
    if state:
        lines += ["settings:", f"  state: {state}"]
    lines.append("registries:")
    for i in range(n):
        lines += [
            "  - provider: other",
            f"    slug: reg-{i}",
            f"    endpoint: registry-{i}.example.com",
            f"    username: user{i}",
            "    password: ${REG_PASSWORD}",
            "    skip_validation: true",
        ]
    return "\n".join(lines) + "\n"


class Runner:
    """One checkout with a registries file and a CI job's environment."""

    def __init__(self, directory, env):
        self.dir = directory
        self.env = env
        self.outputs: list[str] = []

    def write(self, text: str) -> None:
        (self.dir / "registries.yaml").write_text(textwrap.dedent(text))

    def regsync(self, *args, expect=None, timeout=120, env=None):
        proc = subprocess.run([sys.executable, "-m", "reconciler", *args], cwd=self.dir,
                              env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout)
        self.outputs.append(proc.stdout + proc.stderr)
        if expect is not None:
            assert proc.returncode == expect, (args, proc.returncode, proc.stdout, proc.stderr)
        return proc

    def start(self, *args, env=None):
        return subprocess.Popen([sys.executable, "-m", "reconciler", *args], cwd=self.dir,
                                env={**self.env, **(env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)


class Team:
    def __init__(self, kind, tmp_path, sandbox, request):
        self.kind = kind
        self.tmp = tmp_path
        self.sandbox = sandbox
        self.base_env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "NO_COLOR": "1",
            **sandbox.env(),
            "REG_PASSWORD": CANARY,
            "REGSYNC_STATE_KEY": KEY,
            "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        }
        self.runners: list[Runner] = []
        if kind == "git":
            self.origin = request.getfixturevalue("origin")
            self.base_env.update(self.origin.env, HOME=str(tmp_path))
            self.location = "git:regsync-state"
        elif kind == "s3":
            self.bucket = request.getfixturevalue("s3")
            self.base_env.update(self.bucket.env)
            self.location = self.bucket.url()
        else:
            self.location = str(tmp_path / "shared.state.json")

    def runner(self, n: int = 3) -> Runner:
        """A fresh checkout (a new CI runner) with only the registries file, the secrets
        and REGSYNC_STATE_KEY."""
        name = f"runner-{len(self.runners)}"
        if self.kind == "git":
            directory = self.origin.clone(name)
        else:
            directory = self.tmp / name
            directory.mkdir()
        r = Runner(directory, dict(self.base_env))
        r.write(registries_file(n, self.location))
        self.runners.append(r)
        return r

    def remote(self) -> dict:
        import httpx

        answer = httpx.get(f"{self.sandbox.origin}/v3/external_registries",
                           headers={"Authorization": self.sandbox.token}, timeout=5)
        return {x["slug"]: x for x in (answer.json()["external_registries"] or [])}

    def stored(self) -> str:
        if self.kind == "git":
            return self.origin.all_objects_text()
        if self.kind == "s3":
            return "".join(v.decode(errors="replace") for v in self.bucket.objects().values())
        return "".join(p.read_text(errors="replace") for p in self.tmp.glob("shared.state.json*"))

    def check_no_secret(self) -> None:
        stored = self.stored()  # no password, state key or API token, in any backend
        for secret in (CANARY, KEY, TOKEN, READONLY_TOKEN):
            assert secret not in stored
            for r in self.runners:
                for text in r.outputs:
                    assert secret not in text


@pytest.fixture(params=["git", "s3"])
def team(request, tmp_path, sandbox):
    t = Team(request.param, tmp_path, sandbox, request)
    yield t
    t.check_no_secret()


@pytest.fixture(params=["file", "git", "s3"])
def any_team(request, tmp_path, sandbox):
    t = Team(request.param, tmp_path, sandbox, request)
    yield t
    t.check_no_secret()


def test_a_fresh_runner_plans_no_changes_after_an_apply_elsewhere(team):
    merge_job = team.runner()
    merge_job.regsync("apply", "--auto-approve", "--skip-tests", expect=0)
    assert sorted(team.remote()) == ["reg-0", "reg-1", "reg-2"]

    pr_job = team.runner()
    plan = pr_job.regsync("plan", "--detailed-exitcode", expect=0)
    assert "No changes" in plan.stdout
    # a PR job's read-only token and the merge job's write token agree on every fingerprint
    readonly = team.runner()
    readonly.regsync("plan", "--detailed-exitcode", expect=0, env={"REPLICATED_API_TOKEN": READONLY_TOKEN})
    shown = json.loads(pr_job.regsync("state", "show", "--format", "json", expect=0).stdout)
    assert shown["location"] == team.location and shown["serial"] >= 1 and shown["lock"] is None
    assert shown["key_matches"] is True
    assert [(r["slug"], r["fingerprint"]) for r in shown["registries"]] == [
        ("reg-0", True), ("reg-1", True), ("reg-2", True)]
    assert "hmac-sha256" not in json.dumps(shown)


def test_a_plan_against_a_shared_state_that_does_not_exist_yet_warns(team):
    team.runner().regsync("apply", "--auto-approve", "--skip-tests", expect=0)
    typo = f"{team.location}-typo"
    runner = team.runner()
    plan = runner.regsync("plan", "--state", typo, expect=0)
    assert plan.stdout.count("credentials: (will be set)") == 3
    assert "| Warning: the state" in plan.stdout  # the text plan's banner
    shown = json.loads(runner.regsync("plan", "--state", typo, "--format", "json", expect=0).stdout)
    assert shown["warnings"] == [
        f"the state {typo} does not exist yet (no such "
        f"{'branch on origin' if team.kind == 'git' else 'object'}), but the team already has 3 "
        "of the file's registries: their credentials show as \"will be set\". If a state was "
        "expected there, check the location; otherwise the first apply creates it"
    ]
    # the real one: no warning
    assert "does not exist yet" not in team.runner().regsync("plan", expect=0).stdout


def test_a_shared_state_needs_regsync_state_key(team):
    runner = team.runner()
    proc = runner.regsync("plan", expect=1, env={"REGSYNC_STATE_KEY": ""})
    assert proc.stderr.strip() == (
        f"error: {team.location}: a shared state needs REGSYNC_STATE_KEY, the key of its "
        "fingerprints, the same in every job (each job's API token may differ); make one with "
        "`regsync state new-key` and give it to every job as a secret"
    )
    key = runner.regsync("state", "new-key", expect=0).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", key) and key != runner.regsync("state", "new-key", expect=0).stdout.strip()


def test_another_key_is_one_error_and_rekey_accepts_it(team):
    runner = team.runner()
    runner.regsync("apply", "--auto-approve", "--skip-tests", expect=0)
    other = {"REGSYNC_STATE_KEY": "another-" + KEY}
    proc = runner.regsync("plan", expect=1, env=other)
    assert proc.stderr.count("\n") == 1
    assert "this state was written with another REGSYNC_STATE_KEY" in proc.stderr
    assert "pass --rekey" in proc.stderr
    plan = runner.regsync("plan", "--rekey", "--detailed-exitcode", expect=2, env=other)
    assert "Plan: 0 to add, 3 to change, 0 to destroy." in plan.stdout
    runner.regsync("apply", "--rekey", "--auto-approve", "--skip-tests", expect=0, env=other)
    team.runner().regsync("plan", "--detailed-exitcode", expect=0, env=other)
    assert "this state was written with another" in runner.regsync("plan", expect=1).stderr


def test_two_applies_at_once_one_applies_and_the_other_names_the_lock(team):
    team.sandbox.faults.latency_ms = 700  # each apply holds the lock for 4 calls, ~3 s
    a, b = team.runner(), team.runner()
    procs = [r.start("apply", "--auto-approve", "--skip-tests", "--parallelism", "1") for r in (a, b)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    for r, (_, out, err) in zip((a, b), results, strict=True):
        r.outputs.append(out + err)
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    _, _, err = next(res for res in results if res[0] == 1)
    assert f"error: {team.location} is locked: lock " in err
    assert "for `regsync apply` (regsync " in err and "regsync state unlock " in err
    assert sorted(team.remote()) == ["reg-0", "reg-1", "reg-2"]
    team.runner().regsync("plan", "--detailed-exitcode", expect=0)


def test_with_a_lock_timeout_applies_wait_then_one_finds_nothing_to_do(team):
    from reconciler.state.location import parse_location
    from reconciler.state.store import StateStore

    a, b = team.runner(), team.runner()
    holder = StateStore(parse_location(team.location), repo_dir=a.dir)
    with holder.locked("apply"):  # another machine's run, holding the lock
        procs = [r.start("apply", "--auto-approve", "--skip-tests", "--lock-timeout", "2m") for r in (a, b)]
        for p in procs:  # each says it waits, and for whom, before doing anything
            line = p.stderr.readline()
            assert line.startswith("Waiting up to 2m for the state's lock: lock "), line
            assert "for `regsync apply` (regsync " in line
        assert team.remote() == {}
    results = [(p.wait(timeout=180), *p.communicate()) for p in procs]
    for r, (_, out, err) in zip((a, b), results, strict=True):
        r.outputs.append(out + err)
    assert [code for code, _, _ in results] == [0, 0], results
    summaries = sorted(re.search(r"Apply complete: (\d+) added", out).group(1) for _, out, _ in results)
    assert summaries == ["0", "3"]
    assert sorted(team.remote()) == ["reg-0", "reg-1", "reg-2"]


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_an_apply_killed_part_way_leaves_a_lock_that_unlock_removes_and_then_converges(any_team):
    team = any_team
    team.sandbox.faults.latency_ms = 150
    runner = team.runner(8)
    proc = runner.start("apply", "--auto-approve", "--skip-tests", "--parallelism", "1")
    try:
        _wait_for(lambda: len(team.remote()) >= 3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    team.sandbox.faults.latency_ms = 0
    # (the create in flight at the kill may still land: count the team after the next run)
    if team.kind == "file":  # the operating system released the lock; the journal kept every record
        # every create recorded before the kill is in the journal; only the one in flight
        # (done by the API, not yet recorded) may need its credentials set again
        plan = runner.regsync("plan", "--detailed-exitcode", expect=2)
        made = len(team.remote())
        changes = re.search(r"Plan: (\d+) to add, (\d+) to change, 0 to destroy\.", plan.stdout)
        assert int(changes.group(1)) == 8 - made and int(changes.group(2)) <= 1, plan.stdout
    else:
        blocked = runner.regsync("apply", "--auto-approve", "--skip-tests", expect=1)
        made = len(team.remote())
        lock_id = re.search(r"regsync state unlock (\S+)", blocked.stderr).group(1)
        assert runner.regsync("state", "unlock", "not-the-id", expect=1).stderr.startswith(
            f"error: {team.location} is locked with another ID: lock {lock_id} held by ")
        runner.regsync("state", "unlock", lock_id, expect=0)
    assert 3 <= made < 8
    applied = runner.regsync("apply", "--auto-approve", "--skip-tests", expect=0)
    # no duplicate, no lost registry: the rest is created; what the killed run made but
    # had not pushed yet (a shared state is pushed every few seconds) gets its credentials
    # set again, and nothing else
    done = re.search(r"Apply complete: (\d+) added, (\d+) changed, 0 destroyed", applied.stdout)
    assert int(done.group(1)) == 8 - made, applied.stdout
    assert int(done.group(2)) <= (1 if team.kind == "file" else made), applied.stdout
    remote = team.remote()
    assert sorted(remote) == sorted(f"reg-{i}" for i in range(8))
    team.runner(8).regsync("plan", "--detailed-exitcode", expect=0)


def test_migrate_from_a_local_file_keeps_every_fingerprint(team, tmp_path):
    laptop = team.runner()
    laptop.write(registries_file(3))  # the default: regsync.state.json beside the file
    laptop.regsync("apply", "--auto-approve", "--skip-tests", expect=0)
    moved = laptop.regsync("state", "migrate", "--to", team.location, expect=0)
    assert moved.stdout == f"  state: {team.location}\n"
    assert "Copied the state (3 registries) from " in moved.stderr
    laptop.regsync("plan", "--state", team.location, "--detailed-exitcode", expect=0)
    team.runner().regsync("plan", "--detailed-exitcode", expect=0)  # settings.state, a new runner
    again = laptop.regsync("state", "migrate", "--to", team.location, expect=1)
    assert "already holds a state; pass --force to replace it" in again.stderr
    laptop.regsync("state", "migrate", "--to", team.location, "--force", expect=0)


def test_migrating_a_state_keyed_by_the_api_token_asks_for_a_rekey_first(team):
    laptop = team.runner()
    laptop.write(registries_file(3))
    laptop.regsync("apply", "--auto-approve", "--skip-tests", expect=0, env={"REGSYNC_STATE_KEY": ""})
    refused = laptop.regsync("state", "migrate", "--to", team.location, expect=1)
    assert "this state was written with another key than REGSYNC_STATE_KEY" in refused.stderr
    assert "apply once with REGSYNC_STATE_KEY set and --rekey, then migrate" in refused.stderr
    laptop.regsync("apply", "--rekey", "--auto-approve", "--skip-tests", expect=0)
    laptop.regsync("state", "migrate", "--to", team.location, expect=0)
    team.runner().regsync("plan", "--detailed-exitcode", expect=0)


def test_state_rm_and_apply_replace_set_credentials_again(any_team):
    runner = any_team.runner()
    runner.regsync("apply", "--auto-approve", "--skip-tests", expect=0)
    shown = runner.regsync("state", "show", expect=0).stdout
    assert f"State: {any_team.location} ({any_team.kind})" in shown
    assert "(REGSYNC_STATE_KEY matches)\n  not locked\n  3 registries\n" in shown
    other = runner.regsync("state", "show", expect=0, env={"REGSYNC_STATE_KEY": "other"}).stdout
    assert "(REGSYNC_STATE_KEY differs)" in other
    assert re.search(r"reg-1\s+other\s+\d{4}-\d\d-\d\dT[\d:]+Z\s+\S+\s+held", shown)
    assert "hmac-sha256" not in shown

    removed = runner.regsync("state", "rm", "reg-1", expect=0)
    assert "Removed reg-1 from " in removed.stderr
    plan = runner.regsync("plan", "--detailed-exitcode", expect=2)
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.stdout
    assert "(will be set)" in plan.stdout
    runner.regsync("apply", "--auto-approve", "--skip-tests", expect=0)
    runner.regsync("plan", "--detailed-exitcode", expect=0)
    assert "records no registry 'nope'" in runner.regsync("state", "rm", "nope", expect=1).stderr

    replaced = runner.regsync("apply", "--replace", "reg-2", "--auto-approve", "--skip-tests", expect=0)
    assert "Apply complete: 0 added, 1 changed, 0 destroyed" in replaced.stdout
    runner.regsync("plan", "--detailed-exitcode", expect=0)
    assert "no registry with slug 'nope'" in runner.regsync(
        "apply", "--replace", "nope", "--auto-approve", expect=1).stderr


def test_a_saved_plan_made_with_replace_or_rekey_applies_as_saved(tmp_path, sandbox):
    team = Team("file", tmp_path, sandbox, None)
    runner = team.runner()
    runner.regsync("apply", "--auto-approve", "--skip-tests", expect=0)
    runner.regsync("plan", "--replace", "reg-2", "--out", "replace.plan", expect=0)
    applied = runner.regsync("apply", "replace.plan", "--skip-tests", expect=0)
    assert "Apply complete: 0 added, 1 changed, 0 destroyed" in applied.stdout
    other = {"REGSYNC_STATE_KEY": "another-" + KEY}
    runner.regsync("plan", "--rekey", "--out", "rekey.plan", expect=0, env=other)
    applied = runner.regsync("apply", "rekey.plan", "--skip-tests", expect=0, env=other)
    assert "Apply complete: 0 added, 3 changed, 0 destroyed" in applied.stdout
    runner.regsync("plan", "--detailed-exitcode", expect=0, env=other)
    runner.regsync("plan", "--replace", "reg-0", "--out", "again.plan", expect=0, env=other)
    beside = runner.regsync("apply", "again.plan", "--replace", "reg-1", expect=1, env=other)
    assert "--replace cannot be given beside it" in beside.stderr
    team.check_no_secret()


def test_state_options_choose_in_order(tmp_path, sandbox):
    """--state, then REGSYNC_STATE, then settings.state (beside the file), then the default."""
    team = Team("file", tmp_path, sandbox, None)
    runner = team.runner(1)
    runner.write(registries_file(1, "from-settings.json"))
    runner.regsync("apply", "--auto-approve", "--skip-tests", "--target", "reg-0", expect=0)
    assert (runner.dir / "from-settings.json").exists()
    env = {"REGSYNC_STATE": str(tmp_path / "from-env.json")}
    runner.regsync("state", "migrate", "--to", str(tmp_path / "from-env.json"), expect=0)
    runner.regsync("plan", "--detailed-exitcode", expect=0, env=env)
    (runner.dir / "from-settings.json").unlink()
    runner.regsync("plan", "--detailed-exitcode", expect=0, env=env)
    runner.regsync("plan", "--detailed-exitcode", "--state", "nowhere.json", expect=2, env=env)
    bad = runner.regsync("plan", expect=1, env={"REGSYNC_STATE": "gs://bucket/x"})
    assert bad.stderr.strip() == (
        "error: REGSYNC_STATE: 'gs://bucket/x' is not a state location regsync knows; "
        "use PATH, file:PATH, s3://BUCKET/KEY or git:BRANCH"
    )
    team.check_no_secret()


def test_a_bad_settings_state_is_a_validate_error_with_its_place(tmp_path):
    (tmp_path / "registries.yaml").write_text(registries_file(1, "s3://bucket-only"))
    proc = subprocess.run([sys.executable, "-m", "reconciler", "validate"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)})
    assert proc.returncode == 1
    assert proc.stdout.strip() == (
        "registries.yaml:3:10: settings: state: 's3://bucket-only' names no object; "
        "use s3://BUCKET/KEY (e.g. s3://bucket-only/regsync.state.json)"
    )


def test_validate_and_help_do_not_import_boto3(tmp_path):
    (tmp_path / "registries.yaml").write_text(registries_file(1, "s3://bucket/regsync.state.json"))
    code = (
        "import sys\n"
        "from reconciler.cli import main\n"
        "for argv in (['validate'], ['--help'], ['state', '--help'], ['state', 'show', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'httpx')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
                                           "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert "show" in proc.stdout and "migrate" in proc.stdout
