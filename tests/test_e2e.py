"""End to end: the real CLI (a subprocess) against the sandbox and a real registry.

Each test writes a registries file, runs `regsync` as a user would, and checks what
the user sees (output, exit code) and what the team ends up with (the sandbox).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import httpx
import pytest

CANARY = f"CANARY-{uuid.uuid4().hex}"


def run(args, *, env, cwd, stdin=None, timeout=60):
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc


def pty_run(project, args, *, when: bytes, send: bytes, until: bytes | None = None
            ) -> tuple[str, int]:
    """Run regsync on a real pseudo-terminal; once ``when`` shows, type ``send``. With
    ``until``, type it again every 0.5 s until ``until`` shows (a Ctrl-C typed in the
    instant between the prompt and the read is taken before the read starts). Killed
    after 60 s. Returns the output and the exit code."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: regsync with the pty as its terminal
        os.chdir(project.dir)
        os.execve(sys.executable, [sys.executable, "-m", "reconciler", *args], project.env)
    out = b""
    deadline = time.monotonic() + 60
    sent = (0.0, -1)  # when, and how much output there was then
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            waited = (until is not None and time.monotonic() - sent[0] > 0.5
                      and until not in out[sent[1]:])
            if when in out and (sent[1] < 0 or waited):
                os.write(fd, send)
                sent = (time.monotonic(), len(out))
    finally:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:  # still running at the deadline
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        os.close(fd)
    return out.decode(errors="replace"), os.waitstatus_to_exitcode(status)


@pytest.fixture
def project(tmp_path, sandbox, registry_basic):
    """A project directory, the environment a CI job would have, and helpers."""

    class Project:
        dir = tmp_path
        config = tmp_path / "registries.yaml"
        state = tmp_path / "regsync.state.json"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "NO_COLOR": "1",
            **sandbox.env(),
            "REG_PASSWORD": registry_basic.password,
            "DH_TOKEN": CANARY,
            "GHCR_TOKEN": CANARY + "-ghcr",
        }
        outputs: list[str] = []

        def write(self, body: str) -> None:
            self.config.write_text(textwrap.dedent(body).lstrip())

        def regsync(self, *args, expect=None, **kw):
            proc = run(list(args), env=self.env, cwd=self.dir, **kw)
            self.outputs.append(proc.stdout + proc.stderr)
            if expect is not None:
                assert proc.returncode == expect, (proc.returncode, proc.stdout, proc.stderr)
            return proc

        def api_calls(self) -> int:
            return sandbox.stats["requests"]

        def remote(self) -> dict:
            r = httpx.get(
                f"{sandbox.origin}/v3/external_registries",
                headers={"Authorization": sandbox.token},
                timeout=5,
            )
            return {x["slug"]: x for x in (r.json()["external_registries"] or [])}

    p = Project()
    yield p
    # Whatever the test did, no secret reached any output or file it left behind.
    leftovers = list(p.outputs)
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix != ".yaml":
            leftovers.append(path.read_text(errors="replace"))
    for text in leftovers:
        assert CANARY not in text
        assert registry_basic.password not in text


def base_config(registry, *, extra: str = "", settings: str = "", tests: str = "[test/hello:v1]"):
    return f"""
        version: 1
        {settings}
        registries:
          - provider: other
            slug: demo
            endpoint: {registry.endpoint}
            username: {registry.username}
            password: ${{REG_PASSWORD}}
            tests: {tests}
          - provider: dockerhub
            slug: dockerhub-acme
            auth_type: token
            username: acme-bot
            token: ${{DH_TOKEN}}
            skip_validation: true
          - provider: ghcr
            username: acme-bot
            token: ${{GHCR_TOKEN}}
            skip_validation: true
        {extra}
    """


def test_first_apply_creates_everything_and_a_second_plan_is_clean_with_one_call(
    project, registry_basic
):
    project.write(base_config(registry_basic))
    project.regsync("validate", expect=0)

    plan = project.regsync("plan", "--detailed-exitcode", expect=2)
    assert "Plan: 3 to add, 0 to change, 0 to destroy." in plan.stdout

    applied = project.regsync("apply", "--auto-approve", expect=0)
    assert (
        "Apply complete: 3 added, 0 changed, 0 destroyed; tests: 1 passed, 0 failed."
        in applied.stdout
    )
    assert set(project.remote()) == {"demo", "dockerhub-acme", "ghcr.io"}

    before = project.api_calls()
    again = project.regsync("plan", "--detailed-exitcode", expect=0)
    assert project.api_calls() - before == 1
    assert "No changes." in again.stdout


def test_a_rotated_secret_gives_exactly_one_update(project, registry_basic):
    project.write(base_config(registry_basic))
    project.regsync("apply", "--auto-approve", "--skip-tests", expect=0)

    project.env["DH_TOKEN"] = CANARY + "-rotated"
    plan = project.regsync("plan", "--format", "json", expect=0)
    data = json.loads(plan.stdout)  # stdout carries only the JSON document
    changed = [c for c in data["changes"] if c["action"] != "noop"]
    assert [(c["action"], c["slug"]) for c in changed] == [("update", "dockerhub-acme")]
    assert "credentials" in changed[0]["fields"]
    assert data["summary"] == {"create": 0, "update": 1, "delete": 0}

    applied = project.regsync("apply", "--auto-approve", "--skip-tests", expect=0)
    assert "Apply complete: 0 added, 1 changed, 0 destroyed" in applied.stdout
    project.regsync("plan", "--detailed-exitcode", expect=0)


def test_removing_an_entry_deletes_it_only_with_prune(project, registry_basic):
    project.write(base_config(registry_basic))
    project.regsync("apply", "--auto-approve", "--skip-tests", expect=0)
    text = project.config.read_text()
    project.config.write_text(text[: text.index("  - provider: ghcr")])

    plan = project.regsync("plan", "--detailed-exitcode", expect=0)
    assert "No changes." in plan.stdout
    assert "ghcr.io (ghcr)" in plan.stdout.split("unmanaged")[1]  # shown, not deleted
    project.regsync("apply", "--auto-approve", "--skip-tests", expect=0)
    assert "ghcr.io" in project.remote()

    plan = project.regsync("plan", "--prune", expect=0)
    assert "Plan: 0 to add, 0 to change, 1 to destroy." in plan.stdout
    applied = project.regsync("apply", "--prune", "--auto-approve", "--skip-tests", expect=0)
    assert "Apply complete: 0 added, 0 changed, 1 destroyed" in applied.stdout
    assert "ghcr.io" not in project.remote()


def test_max_deletes_and_ignore_hold(project, registry_basic):
    project.write(base_config(registry_basic))
    project.regsync("apply", "--auto-approve", "--skip-tests", expect=0)
    # A registry someone else manages, by hand.
    httpx.post(
        project.env["REPLICATED_API_ORIGIN"] + "/v3/external_registry",
        headers={"Authorization": project.env["REPLICATED_API_TOKEN"]},
        json={"provider": "quay", "endpoint": "quay.io", "slug": "legacy-quay",
              "username": "x", "password": "y", "skipValidation": True},
        timeout=5,
    ).raise_for_status()
    project.write(
        f"""
        version: 1
        settings:
          prune: true
          max_deletes: 1
          ignore: [legacy-*]
        registries:
          - provider: other
            slug: demo
            endpoint: {registry_basic.endpoint}
            username: {registry_basic.username}
            password: ${{REG_PASSWORD}}
        """
    )
    plan = project.regsync("plan", "--detailed-exitcode", expect=2)
    assert "Plan: 0 to add, 0 to change, 2 to destroy." in plan.stdout
    assert "max_deletes" in plan.stdout  # the warning banner; the plan itself succeeds
    data = json.loads(project.regsync("plan", "--format", "json", expect=0).stdout)
    deletes = {c["slug"] for c in data["changes"] if c["action"] == "delete"}
    assert deletes == {"dockerhub-acme", "ghcr.io"}

    refused = project.regsync("apply", "--auto-approve", "--skip-tests", expect=1)
    assert "max_deletes" in refused.stderr
    assert set(project.remote()) == {"demo", "dockerhub-acme", "ghcr.io", "legacy-quay"}

    project.regsync("apply", "--auto-approve", "--skip-tests", "--force", expect=0)
    assert set(project.remote()) == {"demo", "legacy-quay"}


def test_a_stale_saved_plan_is_refused(project, registry_basic):
    project.write(base_config(registry_basic))
    project.regsync("plan", "--out", "first.plan", expect=0)

    # The team's registries changed since the plan.
    project.regsync("apply", "--auto-approve", "--skip-tests", "--target", "ghcr.io", expect=0)
    stale = project.regsync("apply", "first.plan", expect=1)
    assert "registries changed since the plan" in stale.stderr

    # The file changed since the plan.
    project.regsync("plan", "--out", "second.plan", expect=0)
    project.config.write_text(project.config.read_text().replace("acme-bot", "acme-robot", 1))
    stale = project.regsync("apply", "second.plan", expect=1)
    assert "file changed since the plan" in stale.stderr

    # A secret no longer matches its planned fingerprint.
    project.write(base_config(registry_basic))
    project.regsync("plan", "--out", "third.plan", expect=0)
    project.env["DH_TOKEN"] = CANARY + "-other"
    stale = project.regsync("apply", "third.plan", expect=1)
    assert "no longer matches" in stale.stderr

    # A fresh saved plan applies exactly, without asking.
    project.regsync("plan", "--out", "fourth.plan", expect=0)
    applied = project.regsync("apply", "fourth.plan", "--skip-tests", expect=0)
    assert "Apply complete: 2 added, 0 changed, 0 destroyed" in applied.stdout


def test_a_failed_image_test_fails_apply(project, registry_basic):
    project.write(base_config(registry_basic, tests="[test/hello:v1, test/hello:missing]"))
    applied = project.regsync("apply", "--auto-approve", "--report", "report.json", expect=1)
    assert "tests: 1 passed, 1 failed." in applied.stdout
    assert "404" in applied.stdout
    report = json.loads((project.dir / "report.json").read_text())
    assert report  # the report names each change and test
    # The changes themselves landed; only the test failed.
    assert set(project.remote()) == {"demo", "dockerhub-acme", "ghcr.io"}

    tested = project.regsync("test", "--slug", "demo", expect=1)
    assert "tests: 1 passed, 1 failed." in tested.stdout


def test_every_format_and_file_is_free_of_secrets(project, registry_basic):
    project.write(base_config(registry_basic))
    for fmt in ("text", "markdown", "json"):
        project.regsync("plan", "--format", fmt, expect=0)
    project.regsync("plan", "--out", "p.plan", expect=0)
    project.regsync("apply", "--auto-approve", "--report", "r.json", expect=0)
    project.env["DH_TOKEN"] = CANARY + "-rotated"
    for fmt in ("text", "markdown", "json"):
        project.regsync("plan", "--format", fmt, expect=0)
    project.regsync("ls", "--format", "json", expect=0)
    project.regsync("import", "-o", "imported.yml", expect=0)
    # The project fixture's teardown reads every output and file for the canaries.


def test_an_unset_variable_stops_before_any_call(project, registry_basic):
    project.write(base_config(registry_basic))
    del project.env["DH_TOKEN"]
    before = project.api_calls()
    proc = project.regsync("plan", expect=1)
    assert "DH_TOKEN" in proc.stderr
    assert 'registries[1] (dockerhub "dockerhub-acme")' in proc.stderr
    assert project.api_calls() == before


def test_apply_without_a_terminal_needs_auto_approve(project, registry_basic):
    project.write(base_config(registry_basic))
    proc = project.regsync("apply", expect=1, stdin="yes\n")
    assert "--auto-approve" in proc.stderr
    assert project.remote() == {}


def test_usage_errors_exit_1_so_that_2_means_changes(project):
    proc = project.regsync("plan", "--format", "yaml", expect=1)
    assert "--format" in proc.stderr


def test_validate_and_help_do_not_import_httpx_or_deepdiff(project, registry_basic):
    project.write(base_config(registry_basic))
    code = (
        "import sys\n"
        "from reconciler.cli import main\n"
        "for argv in (['validate', 'registries.yaml'], ['--help'], ['plan', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'deepdiff')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=project.dir, env=project.env,
        capture_output=True, text=True, timeout=60,
    )
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_a_change_made_outside_regsync_is_caught_and_undone(project, registry_basic):
    project.write(base_config(registry_basic))
    project.regsync("apply", "--auto-approve", "--skip-tests", expect=0)
    # Later, someone rotates the Docker Hub token in the Portal (the API never shows
    # passwords). "Later": changes within reconciler.diff.CLOCK_TOLERANCE count as ours,
    # so instead of waiting that long, the state says regsync's own change was 2 s ago.
    from datetime import datetime, timedelta

    from reconciler.state import load_state, save_state

    state = load_state(project.state)
    entry = state.registries["dockerhub-acme"]
    ours = datetime.fromisoformat(entry.updated_at.replace("Z", "+00:00")) - timedelta(seconds=2)
    entry.updated_at = ours.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    save_state(project.state, state)
    httpx.put(
        project.env["REPLICATED_API_ORIGIN"] + "/v3/external_registry/dockerhub-acme",
        headers={"Authorization": project.env["REPLICATED_API_TOKEN"]},
        json={"password": "set-in-the-portal", "skipValidation": True},
        timeout=5,
    ).raise_for_status()

    plan = project.regsync("plan", "--detailed-exitcode", expect=2)
    assert "changed outside regsync" in plan.stdout
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.stdout
    applied = project.regsync("apply", "--auto-approve", "--skip-tests", expect=0)
    assert "Apply complete: 0 added, 1 changed, 0 destroyed" in applied.stdout
    project.regsync("plan", "--detailed-exitcode", expect=0)


def test_a_second_apply_waits_for_the_lock_then_fails_clearly(project, registry_basic):
    from reconciler.state import StateLock

    project.write(base_config(registry_basic))
    with StateLock(project.state):
        proc = project.regsync("apply", "--auto-approve", "--skip-tests", expect=1)
    assert "locked" in proc.stderr
    assert project.remote() == {}


def test_a_saved_plan_takes_no_target_or_prune_of_its_own(project, registry_basic):
    project.write(base_config(registry_basic))
    project.regsync("plan", "--out", "p.plan", expect=0)
    proc = project.regsync("apply", "p.plan", "--prune", expect=1)
    assert ("a saved plan carries the registries file, state file, --target, --prune, --rekey "
            "and --replace") in proc.stderr
    assert "so --prune cannot be given beside it" in proc.stderr
    assert project.remote() == {}


def test_apply_on_a_terminal_shows_the_plan_and_asks(project, registry_basic, tmp_path):
    """Typed answers through a real pseudo-terminal: only 'yes' applies."""
    project.write(base_config(registry_basic))

    def on_a_terminal(answer: str) -> str:
        out, _ = pty_run(project, ["apply", "--skip-tests"], when=b"Enter a value:",
                         send=answer.encode() + b"\n")
        return out

    declined = on_a_terminal("no")
    assert "Plan: 3 to add, 0 to change, 0 to destroy." in declined
    assert "Apply cancelled; nothing was changed." in declined
    assert project.remote() == {}

    accepted = on_a_terminal("yes")
    assert "Apply complete: 3 added, 0 changed, 0 destroyed" in accepted
    assert len(project.remote()) == 3
    project.outputs.extend([declined, accepted])


def test_the_file_is_checked_before_the_token(project, registry_basic):
    project.write(base_config(registry_basic).replace("username: acme-bot", "usernme: acme-bot", 1))
    del project.env["REPLICATED_API_TOKEN"]
    proc = project.regsync("plan", expect=1)
    assert 'unknown field "usernme"; did you mean "username"?' in proc.stderr
    assert "REPLICATED_API_TOKEN" not in proc.stderr


def test_a_saved_plan_keeps_its_state_file(project, registry_basic):
    project.write(base_config(registry_basic))
    project.regsync("apply", "--auto-approve", "--skip-tests", "--state", "other.json",
                    "--target", "ghcr.io", expect=0)
    project.regsync("plan", "--state", "other.json", "--out", "p.plan", expect=0)
    applied = project.regsync("apply", "p.plan", "--skip-tests", expect=0)
    assert "Apply complete: 2 added, 0 changed, 0 destroyed" in applied.stdout
    assert not project.state.exists()
    project.regsync("plan", "--state", "other.json", "--detailed-exitcode", expect=0)


def test_an_unwritable_report_path_stops_apply_before_any_change(project, registry_basic):
    project.write(base_config(registry_basic))
    proc = project.regsync("apply", "--auto-approve", "--report", "no/such/dir/r.json", expect=1)
    assert "cannot write no/such/dir/r.json" in proc.stderr
    assert project.remote() == {}


def test_the_sandbox_command_serves_the_cli_and_stops_on_ctrl_c(tmp_path):
    import signal

    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "sandbox", "--port", "0", "--db", "sandbox.db",
         "--token", "t0ken-for-the-test"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )
    try:
        origin = None
        deadline = time.monotonic() + 20
        while origin is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "regsync sandbox exited before printing its origin"
            if line.startswith("REPLICATED_API_ORIGIN="):
                origin = line.strip().split("=", 1)[1]
        listed = run(["ls", "--format", "json"], cwd=tmp_path,
                     env={**env, "REPLICATED_API_TOKEN": "t0ken-for-the-test",
                          "REPLICATED_API_ORIGIN": origin})
        assert listed.returncode == 0 and json.loads(listed.stdout) == []
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "Traceback" not in rest
    assert "GET /vendor/v3/external_registries 200" in rest
    assert (tmp_path / "sandbox.db.key").stat().st_mode & 0o777 == 0o600
