"""End to end, what a new user meets in the first hour: the real CLI (a subprocess)
against the sandbox and a real registry, checked by what the user sees."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

from tests.test_e2e import CANARY, base_config, project, pty_run, run  # noqa: F401 - project is a fixture


def test_when_every_change_fails_the_last_line_says_apply_failed(project, registry_basic):
    project.write(base_config(registry_basic, tests="[test/hello:v1]")
                  .split("          - provider: dockerhub")[0])
    project.config.write_text(project.config.read_text() + "    skip_validation: false\n")
    project.env["REG_PASSWORD"] = "not-the-password"
    applied = project.regsync("apply", "--auto-approve", expect=1)
    last = applied.stdout.strip().splitlines()[-1]
    assert last.startswith("Apply failed: 1 of 1 changes failed; 0 added, 0 changed, 0 destroyed; tests: ")
    assert "Apply complete" not in applied.stdout


def test_a_failed_image_test_makes_the_last_line_apply_failed(project, registry_basic):
    project.write(base_config(registry_basic, tests="[test/hello:v1, test/hello:missing]"))
    applied = project.regsync("apply", "--auto-approve", expect=1)
    assert applied.stdout.strip().splitlines()[-1] == (
        "Apply failed: 1 of 2 image tests failed; 3 added, 0 changed, 0 destroyed; "
        "tests: 1 passed, 1 failed."
    )


def test_progress_lines_from_parallel_workers_are_whole_lines(project, registry_basic):
    images = ", ".join(f"test/hello:{tag}" for tag in ["v1", "missing"] * 8)
    project.write(base_config(registry_basic, tests=f"[{images}]"))
    applied = project.regsync("apply", "--auto-approve", "--parallelism", "16", expect=1)
    lines = applied.stdout.splitlines()
    tests = [line for line in lines if line.startswith("test ")]
    assert len(tests) == 16
    for line in tests:
        assert line.startswith("test demo test/hello:") and line.count("test ") == 1
    failed = [i for i, line in enumerate(lines) if line.startswith("test ") and "FAILED" in line]
    assert len(failed) == 8
    assert all(lines[i + 1].startswith("    image or tag not found") for i in failed)


def test_ctrl_c_at_the_prompt_says_interrupted_on_its_own_line_and_exits_130(project, registry_basic):
    project.write(base_config(registry_basic))
    out, code = pty_run(project, ["apply", "--skip-tests"], when=b"Enter a value:", send=b"\x03",
                         until=b"Interrupted.")
    project.outputs.append(out)
    assert code == 130
    assert "Interrupted." in [line.strip() for line in out.splitlines()]
    assert project.remote() == {}


def test_ctrl_c_while_waiting_for_the_api_says_interrupted_and_exits_130(tmp_path):
    with socket.socket() as server:  # accepts, then never answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(30)
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
               "REPLICATED_API_TOKEN": "t",
               "REPLICATED_API_ORIGIN": f"http://127.0.0.1:{server.getsockname()[1]}/vendor"}
        proc = subprocess.Popen([sys.executable, "-m", "reconciler", "ls"], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            conn, _ = server.accept()
            with conn:
                proc.send_signal(signal.SIGINT)
                out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130
    assert err == "Interrupted.\n" and out == ""


def test_a_saved_plan_applies_from_another_directory(project, registry_basic):
    project.write(base_config(registry_basic))
    project.regsync("plan", "--out", "p.plan", expect=0)
    elsewhere = project.dir / "elsewhere"
    elsewhere.mkdir()
    proc = run(["apply", str(project.dir / "p.plan"), "--skip-tests"], env=project.env, cwd=elsewhere)
    project.outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stderr
    assert "Apply complete: 3 added, 0 changed, 0 destroyed" in proc.stdout
    assert (project.dir / "regsync.state.json").exists()
    assert not (elsewhere / "regsync.state.json").exists()


def test_a_saved_plan_refuses_a_config_or_state_of_its_own(project, registry_basic):
    project.write(base_config(registry_basic))
    project.regsync("plan", "--out", "p.plan", expect=0)
    for extra in (["-c", "other.yaml"], ["--state", "s.json"]):
        proc = project.regsync("apply", "p.plan", *extra, expect=1)
        assert f"so {extra[0].replace('-c', '--config')} cannot be given beside it" in proc.stderr
    assert project.remote() == {}


def test_a_target_that_matches_nothing_is_an_error(project, registry_basic):
    project.write(base_config(registry_basic))
    proc = project.regsync("plan", "--target", "nope", expect=1)
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: --target 'nope': matches no registry in the file or the team "
        "(slugs: demo, dockerhub-acme, ghcr.io)"
    )
    globbed = project.regsync("plan", "--target", "d*", "--format", "json", expect=0)
    assert sorted(c["slug"] for c in json.loads(globbed.stdout)["changes"]) == ["demo", "dockerhub-acme"]
    applied = project.regsync("apply", "--auto-approve", "--target", "de?o", expect=0)
    assert "Apply complete: 1 added, 0 changed, 0 destroyed; tests: 1 passed, 0 failed." in applied.stdout


def test_regsync_test_with_nothing_to_test_says_so_and_fails(project, registry_basic):
    project.write(base_config(registry_basic).replace("tests: [test/hello:v1]", ""))
    before = project.api_calls()
    proc = project.regsync("test", expect=1)
    assert "nothing to test: no registry in it has `tests:`" in proc.stderr
    assert project.api_calls() == before
    project.write(base_config(registry_basic))
    proc = project.regsync("test", "--slug", "ghcr.io", expect=1)
    assert "nothing to test: none of the registries given with --slug has `tests:`" in proc.stderr


def test_a_username_only_change_shows_only_the_username(project, registry_basic):
    project.write(base_config(registry_basic))
    project.regsync("apply", "--auto-approve", "--skip-tests", expect=0)
    project.write(base_config(registry_basic).replace(
        "auth_type: token\n            username: acme-bot", "auth_type: token\n            username: acme-robot"))
    plan = project.regsync("plan", expect=0)
    assert "username: acme-bot -> acme-robot" in plan.stdout
    assert "credentials" not in plan.stdout
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.stdout
    project.regsync("apply", "--auto-approve", "--skip-tests", expect=0)
    assert project.remote()["dockerhub-acme"]["username"] == "acme-robot"
    project.regsync("plan", "--detailed-exitcode", expect=0)  # the state knows the new username


def test_import_comments_out_what_the_schema_refuses_and_the_file_validates(project):
    import httpx

    for body in (
        {"provider": "ecr", "endpoint": "1234567890.dkr.ecr.us-east-1.amazonaws.com",
         "slug": "pact-ecr", "authType": "accesskey", "username": "AKIAEXAMPLE"},
        {"provider": "other", "endpoint": "r.example.com", "slug": "my registry", "username": "me"},
        {"provider": "ghcr", "endpoint": "ghcr.io", "authType": "token", "username": "octocat"},
    ):
        httpx.post(project.env["REPLICATED_API_ORIGIN"] + "/v3/external_registry",
                   headers={"Authorization": project.env["REPLICATED_API_TOKEN"]},
                   json={**body, "password": CANARY, "skipValidation": True},
                   timeout=5).raise_for_status()
    proc = project.regsync("import", "-o", "registries.yaml", expect=0)
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note: ")]
    assert [n.split(":")[1].strip() for n in notes] == ["'my registry' is written commented out",
                                                        "'pact-ecr' is written commented out"]
    assert "is not an Amazon ECR host" in notes[1]
    text = project.config.read_text()
    assert text.startswith("# yaml-language-server: $schema=./schema/registries.schema.json\n")
    assert "token: ${GHCR_IO_TOKEN}" in text
    valid = project.regsync("validate", expect=0)
    assert valid.stderr.strip() == "1 file valid"


def test_errors_a_newcomer_meets_say_what_to_do(project):
    missing = project.regsync("plan", expect=1)
    assert missing.stderr.strip() == (
        "registries.yaml:1:1: file not found; write one, or make it from the team's registries "
        "with: regsync import -o registries.yaml")
    project.config.write_text("version: 1\nregistries:\n  - provider: GitHub\n    username: x\n"
                              "    token: $GHCR_TOKEN\n")
    shown = project.regsync("validate", expect=1).stdout
    assert 'did you mean "ghcr"?' in shown
    project.config.write_text("version: 1\nregistries:\n  - provider: ghcr\n    username: x\n"
                              "    token: $GHCR_TOKEN\n")
    shown = project.regsync("validate", expect=1).stdout
    assert "write token: ${GHCR_TOKEN}" in shown
    project.config.write_text("version: 1\nregistries:\n\t- provider: ghcr\n")
    assert "a tab character" in project.regsync("validate", expect=1).stdout
    # one spelling of the prefix, from regsync and from the option parser alike
    usage = project.regsync("plan", "--format", "yaml", expect=1)
    assert usage.stderr.strip().splitlines()[-1].startswith("error: Invalid value for '--format'")
    project.write("version: 1\nregistries: []\n")
    del project.env["REPLICATED_API_TOKEN"]
    token = project.regsync("ls", expect=1)
    assert token.stderr.startswith("error: ")
    assert "Error" not in usage.stderr + token.stderr
