"""`regsync import`: the file it writes maps every provider back through the provider
table, validates, and plans to no change apart from credentials."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from reconciler.api import VendorAPI
from reconciler.config import check_files, load_config
from reconciler.diff import diff
from reconciler.importer import env_var_name, import_config, import_registries
from reconciler.model import RegistryWrite, RemoteRegistry
from reconciler.secrets import resolve_secrets
from reconciler.secretvalue import Secret
from reconciler.state import Fingerprinter, State

ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
PLACEHOLDER = re.compile(r"^\$\{([A-Z_][A-Z0-9_]*)\}$")

#: one registry per provider and auth type, as the API lists them
REMOTE = [
    RemoteRegistry("my-ecr", "ecr", "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                   "accesskey", "AKIAEXAMPLE"),
    RemoteRegistry("index.docker.io", "dockerhub", "index.docker.io", "token", "acme-bot",
                   app_ids=("app-b", "app-a")),
    RemoteRegistry("hub-password", "dockerhub", "index.docker.io", "password", "acme"),
    RemoteRegistry("ghcr.io", "ghcr", "ghcr.io", "token", "octocat"),
    RemoteRegistry("gar-sa", "gar", "us-east1-docker.pkg.dev", "serviceaccount", "_json_key"),
    RemoteRegistry("gar-token", "gar", "europe-west1-docker.pkg.dev", "token",
                   "oauth2accesstoken"),
    RemoteRegistry("gcr.io", "gcr", "gcr.io", "serviceaccount", "_json_key"),
    RemoteRegistry("quay.io", "quay", "quay.io", "password", "robot+acme"),
    RemoteRegistry("nexus", "nexus", "nexus.example.net", "password", "deploy"),
    RemoteRegistry("registry.example.com", "other", "registry.example.com", "password", "me"),
]


def entries(text: str) -> dict[str, dict]:
    doc = yaml.safe_load(text)
    assert doc["version"] == 1
    return {e.get("slug") or e.get("endpoint") or e["provider"]: e for e in doc["registries"]}


def placeholders(text: str) -> list[str]:
    """The variable of every secret field, from the parsed file (comments aside)."""
    names = []
    for entry in yaml.safe_load(text)["registries"]:
        for field in ("password", "token", "secret_access_key", "service_account_key"):
            if field in entry:
                names.append(PLACEHOLDER.match(entry[field]).group(1))
    return names


def test_every_provider_maps_back_to_the_fields_of_the_file():
    got = entries(import_config(REMOTE))
    assert got["my-ecr"] == {
        "provider": "ecr", "slug": "my-ecr",
        "endpoint": "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "access_key_id": "AKIAEXAMPLE",
        "secret_access_key": "${MY_ECR_SECRET_ACCESS_KEY}",
    }
    # slug = endpoint = the provider's default: neither is written
    assert got["dockerhub"] == {
        "provider": "dockerhub", "auth_type": "token", "username": "acme-bot",
        "token": "${INDEX_DOCKER_IO_TOKEN}", "app_ids": ["app-a", "app-b"],
    }
    assert got["hub-password"]["auth_type"] == "password"
    assert got["hub-password"]["password"] == "${HUB_PASSWORD_PASSWORD}"
    assert "endpoint" not in got["hub-password"]
    assert got["ghcr"] == {"provider": "ghcr", "username": "octocat",
                           "token": "${GHCR_IO_TOKEN}"}
    # the fixed GCP usernames are dropped
    assert got["gar-sa"] == {
        "provider": "gar", "slug": "gar-sa", "endpoint": "us-east1-docker.pkg.dev",
        "auth_type": "serviceaccount",
        "service_account_key": "${GAR_SA_SA_KEY}",
    }
    assert got["gar-token"]["auth_type"] == "token" and "username" not in got["gar-token"]
    assert got["gcr.io"] == {"provider": "gcr", "endpoint": "gcr.io",
                             "service_account_key": "${GCR_IO_SA_KEY}"}
    assert "auth_type" not in got["quay"] and got["quay"]["username"] == "robot+acme"
    assert got["nexus"]["endpoint"] == "nexus.example.net" and got["nexus"]["slug"] == "nexus"
    assert got["registry.example.com"] == {
        "provider": "other", "endpoint": "registry.example.com", "username": "me",
        "password": "${REGISTRY_EXAMPLE_COM_PASSWORD}"}


def test_placeholders_are_valid_unique_env_names_and_the_output_is_deterministic():
    clashing = [RemoteRegistry("a.b", "other", "h1.example.com", "password", "u"),
                RemoteRegistry("a-b", "other", "h2.example.com", "password", "u"),
                RemoteRegistry("9lives", "other", "h3.example.com", "password", "u")]
    text = import_config(REMOTE + clashing)
    names = placeholders(text)
    assert len(names) == len(REMOTE) + 3
    assert len(set(names)) == len(names)
    assert all(ENV_NAME.match(n) for n in names)
    assert env_var_name("9lives", "password") == "REG_9LIVES_PASSWORD"
    assert import_config(list(reversed(REMOTE + clashing))) == text


def test_a_registry_regsync_cannot_manage_is_named_in_a_comment_not_written():
    text = import_config([RemoteRegistry("odd", "artifactory", "x.example.com", "password", "u"),
                          RemoteRegistry("ghcr-pw", "ghcr", "ghcr.io", "password", "u"),
                          RemoteRegistry("proxy", "other", "proxy.replicated.com", "password",
                                         "u", is_replicated=True)])
    assert "# not imported: 'odd': provider 'artifactory' is not one regsync manages" in text
    assert "# not imported: 'proxy': provided by Replicated itself (isReplicated)" in text
    assert "# not imported: 'ghcr-pw': ghcr with authType 'password' is not supported" in text
    assert yaml.safe_load(text)["registries"] == []


def test_an_empty_team_gives_a_valid_empty_file(tmp_path):
    path = tmp_path / "registries.yaml"
    path.write_text(import_config([]))
    assert load_config(str(path)).registries == ()


SERVICE_ACCOUNT = json.dumps({
    "type": "service_account",
    "client_email": "x@p.iam.gserviceaccount.com",
    "private_key": "-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----\n",
})


def test_imported_file_validates_and_plans_no_change_but_credentials(sandbox, tmp_path):
    with VendorAPI(token=sandbox.token, origin=sandbox.origin) as api:
        for r in REMOTE:
            api.create_registry(RegistryWrite(
                provider=r.provider, endpoint=r.endpoint, slug=r.slug, auth_type=r.auth_type,
                username=r.username, password=Secret("pw"), app_ids=r.app_ids or None,
                skip_validation=True))
        remote = api.list_registries()
        text = import_config(remote)
        path = tmp_path / "registries.yaml"
        path.write_text(text)

        config = load_config(str(path))
        assert config.warnings  # gcr deprecated, GAR token short-lived: warnings, not errors
        env = {}
        for name in placeholders(text):
            env[name] = SERVICE_ACCOUNT if name.endswith("SA_KEY") else "s3cret"
        config = resolve_secrets(config, env=env)
        plan = diff(config, remote, State(), Fingerprinter(b"k" * 32), prune=True)

    assert {r.slug for r in config.registries} == {r.slug for r in REMOTE}
    assert plan.summary == {"create": 0, "update": len(REMOTE), "delete": 0}
    for change in plan.changes:
        assert change.field_names == ("credentials",), change


def test_an_unset_placeholder_names_its_variable(tmp_path):
    from reconciler.errors import SecretError

    path = tmp_path / "registries.yaml"
    path.write_text(import_config(REMOTE[3:4]))
    with pytest.raises(SecretError, match="GHCR_IO_TOKEN"):
        resolve_secrets(load_config(str(path)), env={})


def test_entries_the_schema_refuses_are_written_commented_out_with_the_reason(tmp_path):
    # The API accepts both (the official CLI's own Pact uses a 10-digit ECR account).
    refused = [RemoteRegistry("pact-ecr", "ecr", "1234567890.dkr.ecr.us-east-1.amazonaws.com",
                              "accesskey", "AKIAEXAMPLE"),
               RemoteRegistry("my registry", "other", "r.example.com", "password", "me")]
    result = import_registries(REMOTE[3:4] + refused)
    assert [slug for slug, _ in result.refused] == ["my registry", "pact-ecr"]
    assert "is not an Amazon ECR host" in dict(result.refused)["pact-ecr"]
    path = tmp_path / "registries.yaml"
    path.write_text(result.text)
    assert check_files([str(path)]) == []
    assert [r.slug for r in load_config(str(path)).registries] == ["ghcr.io"]
    assert "# 'pact-ecr': the API accepted it, but regsync validate refuses it: endpoint" in result.text
    assert "#   endpoint: 1234567890.dkr.ecr.us-east-1.amazonaws.com\n" in result.text
    # uncommented, each entry is back, and validate names its problem
    uncommented = re.sub(r"(?m)^# (?=[- ] )", "", result.text)
    path.write_text(uncommented)
    problems = check_files([str(path)])
    assert len(problems) == 2 and {"slug", "endpoint"} <= {p.message.split()[0] for p in problems}


def test_only_refused_entries_still_give_a_valid_file(tmp_path):
    result = import_registries([RemoteRegistry("my registry", "other", "r.example.com",
                                               "password", "me")])
    path = tmp_path / "registries.yaml"
    path.write_text(result.text)
    assert load_config(str(path)).registries == ()


def test_the_file_starts_with_the_schema_modeline_and_names_variables_after_the_slug():
    text = import_config(REMOTE[:1])
    assert text.splitlines()[0] == "# yaml-language-server: $schema=./schema/registries.schema.json"
    assert env_var_name("acme--prod registry", "password") == "ACME_PROD_REGISTRY_PASSWORD"
    assert env_var_name("x" * 80, "token") == "X" * 40 + "_TOKEN"
    assert env_var_name("---", "token") == "REG_TOKEN"


def test_an_ecr_endpoint_as_slug_gives_a_short_name_and_long_slugs_are_cut_between_words():
    # An ECR registry's slug defaults to its endpoint: a 45-character host
    assert env_var_name("123456789012.dkr.ecr.us-east-1.amazonaws.com", "secret_access_key") == (
        "ECR_123456789012_US_EAST_1_SECRET_ACCESS_KEY")
    assert env_var_name("a" * 30 + "-" + "b" * 20, "token") == "A" * 30 + "_TOKEN"
