"""`plan --check-credentials` and `apply --check-credentials`: the CLI against the sandbox,
whose test call pulls from a real docker-registry with the credentials in the body."""

from __future__ import annotations

import json
import textwrap
import uuid

import pytest

from reconciler.cli import main

CANARY = f"CANARY-{uuid.uuid4().hex}"


@pytest.fixture
def project(tmp_path, sandbox, registry_basic, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    for name, value in sandbox.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GOOD_PASSWORD", registry_basic.password)
    monkeypatch.setenv("BAD_PASSWORD", CANARY)
    monkeypatch.setenv("DH_TOKEN", CANARY + "-dh")

    class Project:
        outputs: list[str] = []

        def write(self, body: str) -> None:
            (tmp_path / "registries.yaml").write_text(textwrap.dedent(body).lstrip())

        def regsync(self, *args) -> tuple[int, str, str]:
            code = main(list(args))
            captured = capsys.readouterr()
            self.outputs.append(captured.out + captured.err)
            return code, captured.out, captured.err

        def slugs(self) -> set[str]:
            return {r.slug for r in sandbox.store.list()}

    p = Project()
    yield p
    texts = list(p.outputs) + [f.read_text(errors="replace") for f in tmp_path.rglob("*")
                               if f.is_file() and f.suffix != ".yaml"]
    for text in texts:
        assert CANARY not in text
        assert registry_basic.password not in text


def config(registry, *, demo_password="GOOD_PASSWORD", extra=""):
    return f"""
        version: 1
        registries:
          - provider: other
            slug: demo
            endpoint: {registry.endpoint}
            username: {registry.username}
            password: ${{{demo_password}}}
            skip_validation: true
            tests: [test/hello:v1, test/hello-docker:v1]
          - provider: dockerhub
            slug: dockerhub-acme
            auth_type: token
            username: acme-bot
            token: ${{DH_TOKEN}}
            skip_validation: true
        {extra}
    """


def test_plan_shows_each_check_and_saves_nothing(project, registry_basic, sandbox):
    project.write(config(registry_basic))
    code, out, err = project.regsync("plan", "--check-credentials", "--detailed-exitcode",
                                     "--out", "p.plan")
    assert code == 2, err
    assert "Plan: 2 to add, 0 to change, 0 to destroy." in out
    tail = out.split("Credential checks (", 1)[1].splitlines()
    assert tail[1:] == [
        "  check demo test/hello:v1: ok (upstream status 200)",
        "  check dockerhub-acme: not checked: the registry has no tests: image to pull",
        "Credential checks: 1 passed, 0 failed, 1 not checked.",
    ]
    assert "Saved the plan to p.plan" in err
    assert project.slugs() == set()  # the check saved no registry
    assert sandbox.stats.by_operation["test"] == 1


def test_a_wrong_password_fails_the_plan_and_no_plan_is_saved(project, registry_basic, tmp_path):
    project.write(config(registry_basic, demo_password="BAD_PASSWORD"))
    code, out, err = project.regsync("plan", "--check-credentials", "--out", "p.plan")
    assert code == 1
    assert "  check demo test/hello:v1: FAILED (upstream status 401)" in out
    assert "the registry refused the file's credentials: fix the secret before applying" in out
    assert "Credential checks: 0 passed, 1 failed, 1 not checked." in out
    assert err.splitlines()[-1] == (
        "error: the credentials in the file failed the check for demo; the plan was not saved")
    assert not (tmp_path / "p.plan").exists()


def test_the_checks_in_the_json_and_markdown_plans(project, registry_basic):
    project.write(config(registry_basic, demo_password="BAD_PASSWORD"))
    code, out, _ = project.regsync("plan", "--check-credentials", "--format", "json")
    assert code == 1
    data = json.loads(out)
    assert data["summary"] == {"create": 2, "update": 0, "delete": 0}
    checks = {c["slug"]: c for c in data["credential_checks"]}
    assert (checks["demo"]["result"], checks["demo"]["status"], checks["demo"]["image"]) == (
        "failed", 401, "test/hello:v1")
    assert checks["dockerhub-acme"]["result"] == "skipped"
    code, out, _ = project.regsync("plan", "--check-credentials", "--format", "markdown")
    assert code == 1
    assert "**Credential checks: 0 passed, 1 failed, 1 not checked.**" in out
    assert "- **FAILED**: `check demo test/hello:v1: FAILED (upstream status 401)" in out


def test_apply_with_a_wrong_password_changes_nothing(project, registry_basic, sandbox, tmp_path):
    project.write(config(registry_basic))
    code, out, err = project.regsync("apply", "--auto-approve", "--check-credentials")
    assert code == 0, err
    assert "check demo test/hello:v1: ok (upstream status 200)" in out
    assert project.slugs() == {"demo", "dockerhub-acme"}
    state_before = (tmp_path / "regsync.state.json").read_text()
    updated_before = sandbox.store.get("demo").updated_at

    # skip_validation: true, so the API itself would take the wrong password
    project.write(config(registry_basic, demo_password="BAD_PASSWORD"))
    code, out, err = project.regsync("apply", "--auto-approve", "--check-credentials")
    assert code == 1
    assert "check demo test/hello:v1: FAILED (upstream status 401)" in out
    assert err.splitlines()[-1] == (
        "error: the credentials in the file failed the check for demo; nothing was changed")
    assert "Apply complete" not in out and "demo: updated" not in out
    assert sandbox.store.get("demo").updated_at == updated_before
    assert sandbox.store.password("demo").reveal() == registry_basic.password
    assert (tmp_path / "regsync.state.json").read_text() == state_before


def test_only_new_and_changed_registries_are_checked(project, registry_basic, sandbox):
    project.write(config(registry_basic))
    assert project.regsync("apply", "--auto-approve", "--skip-tests")[0] == 0
    before = sandbox.stats.by_operation["test"]
    code, out, _ = project.regsync("plan", "--check-credentials")
    assert code == 0
    assert "Credential checks: no new or changed registry to check." in out
    assert sandbox.stats.by_operation["test"] == before
