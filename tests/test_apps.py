"""App scoping by slug (`apps:`): the CLI against the sandbox's GET /v3/apps."""

from __future__ import annotations

import httpx
import pytest

from reconciler.cli import main
from reconciler.errors import APIError
from reconciler.model import TeamApp

APPS = [
    {"id": "2ab3cd", "name": "My App", "slug": "my-app"},
    {"id": "9fe8dc", "name": "Other App", "slug": "other-app"},
]


def control(sandbox, path, body):
    return httpx.post(f"http://127.0.0.1:{sandbox.port}/_sandbox/{path}", json=body,
                      headers={"Authorization": sandbox.token}, timeout=5)


def test_the_sandbox_lists_the_apps_seeded_by_its_control_endpoint(sandbox, api):
    answer = httpx.get(f"{sandbox.origin}/v3/apps", headers={"Authorization": sandbox.token}, timeout=5)
    assert (answer.status_code, answer.json()) == (200, {})  # none: {} as the real API answers
    assert api.list_apps() == []
    assert control(sandbox, "apps", {"apps": APPS}).status_code == 200
    answer = httpx.get(f"{sandbox.origin}/v3/apps", headers={"Authorization": sandbox.token}, timeout=5)
    assert [(a["id"], a["name"], a["slug"]) for a in answer.json()["apps"]] == [
        ("2ab3cd", "My App", "my-app"), ("9fe8dc", "Other App", "other-app")]
    assert api.list_apps() == [TeamApp("2ab3cd", "my-app", "My App"), TeamApp("9fe8dc", "other-app", "Other App")]
    bad = control(sandbox, "apps", {"apps": [{"id": "x"}]})
    assert bad.status_code == 400 and "slug" in bad.json()["message"]
    no_token = httpx.get(f"{sandbox.origin}/v3/apps", timeout=5)
    assert no_token.status_code == 401
    sandbox.reset()
    assert api.list_apps() == []


@pytest.mark.parametrize("body", [b'{"apps": {"id": "x"}}', b'{"apps": [{"id": 1, "slug": "a"}]}', b"[]"])
def test_an_apps_answer_of_the_wrong_shape_is_an_error(body):
    from reconciler.api import VendorAPI

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    with VendorAPI(token="t", origin="http://127.0.0.1:9/vendor", transport=transport) as api:
        with pytest.raises(APIError,
                           match=r"^list apps: the API answered 200 with a body that is not the contract's JSON"):
            api.list_apps()


@pytest.fixture
def project(tmp_path, sandbox, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("PW", "s3cret-value")
    for name, value in sandbox.env().items():
        monkeypatch.setenv(name, value)
    sandbox.set_apps(APPS)

    class Project:
        def write(self, *scope: str) -> None:
            lines = ["version: 1", "registries:", "  - provider: other", "    slug: scoped",
                     "    endpoint: registry.example.com", "    username: robot",
                     "    password: ${PW}", "    skip_validation: true"]
            (tmp_path / "registries.yaml").write_text("\n".join(lines + [f"    {x}" for x in scope]) + "\n")

        def regsync(self, *args) -> tuple[int, str, str]:
            code = main(list(args))
            captured = capsys.readouterr()
            return code, captured.out, captured.err

        def calls(self, operation: str) -> int:
            return sandbox.stats.by_operation[operation]

    return Project()


def test_apps_by_slug_are_resolved_with_one_call_and_shown_by_slug(project, sandbox):
    project.write("apps: [other-app, my-app]", "app_ids: [raw-id]")
    code, out, err = project.regsync("validate")
    assert code == 0, out + err
    code, out, err = project.regsync("plan")
    assert code == 0, err
    assert "      appIds: [my-app, other-app, raw-id]" in out
    assert project.calls("apps") == 1
    code, out, err = project.regsync("apply", "--auto-approve")
    assert code == 0, out + err
    assert set(sandbox.store.get("scoped").app_ids) == {"2ab3cd", "9fe8dc", "raw-id"}

    code, out, _ = project.regsync("plan", "--detailed-exitcode")
    assert (code, out.strip()) == (0, "No changes. The team's registries match the file.")

    project.write("apps: [other-app]")
    code, out, _ = project.regsync("plan", "--detailed-exitcode")
    assert code == 2
    assert "      appIds: [my-app, other-app, raw-id] -> [other-app]" in out
    assert project.regsync("apply", "--auto-approve")[0] == 0
    assert sandbox.store.get("scoped").app_ids == ("9fe8dc",)


def test_an_unknown_slug_is_an_error_at_its_position_listing_the_team_apps(project, sandbox):
    project.write("apps: [my-app, nope]")
    code, out, err = project.regsync("plan")
    assert code == 1 and out == ""
    assert err == (
        'registries.yaml:9:20: registries[0] (other "scoped"): apps[1]: no app with slug "nope" '
        "in the team (its apps: my-app, other-app)\n"
    )
    assert project.calls("list") == 0  # stopped before the registries were listed
    sandbox.set_apps([])
    code, _, err = project.regsync("apply", "--auto-approve")
    assert code == 1 and "(the team has no apps)" in err
    assert sandbox.store.list() == []


def test_no_apps_call_when_the_file_names_none(project):
    project.write("app_ids: [2ab3cd]")
    code, out, _ = project.regsync("plan")
    assert code == 0 and "appIds: [2ab3cd]" in out
    assert project.calls("apps") == 0


def test_import_writes_slugs_and_the_file_plans_no_change_but_credentials(project, tmp_path, monkeypatch):
    project.write("apps: [my-app]", "app_ids: [raw-id]")
    assert project.regsync("apply", "--auto-approve")[0] == 0
    (tmp_path / "regsync.state.json").unlink()
    code, _, err = project.regsync("import", "-o", "imported.yaml")
    assert code == 0, err
    text = (tmp_path / "imported.yaml").read_text()
    assert "apps:\n  - my-app\n" in text and "app_ids:\n  - raw-id\n" in text
    assert project.regsync("validate", "imported.yaml")[0] == 0
    monkeypatch.setenv("SCOPED_PASSWORD", "s3cret-value")
    code, out, _ = project.regsync("plan", "-c", "imported.yaml")
    assert code == 0
    assert "credentials: (will be set)" in out and "appIds" not in out


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("my-app", 'r.yaml:6:11: registries[0] (ghcr "ghcr.io"): apps must be a list, not a string'),
        ("[my-app, my-app]",
         'r.yaml:6:20: registries[0] (ghcr "ghcr.io"): apps lists "my-app" twice (also at line 6); list it once'),
        ('[""]', 'r.yaml:6:12: registries[0] (ghcr "ghcr.io"): apps[0] must not be empty'),
    ],
)
def test_validate_checks_apps_offline(tmp_path, value, message):
    from reconciler.config import check_files

    path = tmp_path / "r.yaml"
    path.write_text("version: 1\nregistries:\n  - provider: ghcr\n    username: a\n    token: ${T}\n"
                    f"    apps: {value}\n")
    assert [str(d).replace(str(path), "r.yaml") for d in check_files([str(path)])] == [message]
