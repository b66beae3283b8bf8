"""The JSON Schemas, per provider: a valid entry of each, and each kind of invalid input
reported at its exact line and column with a message a person can act on."""

from __future__ import annotations

import json

import pytest

from reconciler import schema
from reconciler.config import check_files
from reconciler.providers import PROVIDERS

HEAD = "version: 1\nregistries:\n"

VALID = {
    "ecr": [
        "provider: ecr",
        "endpoint: 123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "access_key_id: AKIAEXAMPLE",
        "secret_access_key: ${AWS_SECRET}",
    ],
    "dockerhub": ["provider: dockerhub", "auth_type: token", "username: acme", "token: ${DH_TOKEN}"],
    "ghcr": ["provider: ghcr", "username: acme", "token: ${GHCR_TOKEN}"],
    "gar": [
        "provider: gar",
        "endpoint: us-east1-docker.pkg.dev",
        "auth_type: serviceaccount",
        "service_account_key: ${GAR_KEY}",
    ],
    "gcr": ["provider: gcr", "endpoint: gcr.io", "service_account_key: ${GCR_KEY}"],
    "quay": ["provider: quay", "username: acme+bot", "password: ${QUAY_PW}"],
    "nexus": ["provider: nexus", "endpoint: nexus.example.net:8443", "username: bot", "password: ${NEXUS_PW}"],
    "other": ["provider: other", "endpoint: registry.example.com", "username: bot", "password: ${OTHER_PW}"],
}
SLUG = {
    "ecr": "123456789012.dkr.ecr.us-east-1.amazonaws.com",
    "dockerhub": "index.docker.io",
    "ghcr": "ghcr.io",
    "gar": "us-east1-docker.pkg.dev",
    "gcr": "gcr.io",
    "quay": "quay.io",
    "nexus": "nexus.example.net:8443",
    "other": "registry.example.com",
}


def entry(lines: list[str]) -> str:
    """One registry entry: its first line at 3:5, the next ones at 4:5, 5:5..."""
    return "  - " + "\n    ".join(lines) + "\n"


@pytest.fixture
def validate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def run(text: str) -> list[str]:
        (tmp_path / "r.yaml").write_text(text)
        return [str(d) for d in check_files(["r.yaml"])]

    return run


def replace(lines: list[str], key: str, new: str | None) -> list[str]:
    out = []
    for line in lines:
        if line.split(":", 1)[0] == key:
            if new is not None:
                out.append(new)
        else:
            out.append(line)
    return out


def label(name: str, slug: str | None = None) -> str:
    return f'registries[0] ({name} "{slug or SLUG[name]}")'


@pytest.mark.parametrize("name", list(VALID))
def test_valid_entry_of_every_provider(validate, name):
    expected = []
    if name == "gcr":
        expected = [
            "r.yaml:3:15: warning: " + label("gcr") + ": Google Container Registry is deprecated by "
            "Google; move to Google Artifact Registry (provider: gar)"
        ]
    assert validate(HEAD + entry(VALID[name])) == expected


@pytest.mark.parametrize("name", list(VALID))
def test_unknown_field_suggests_the_closest(validate, name):
    lines = VALID[name] + ["skip_validaton: true"]
    row = len(lines) + 2
    assert [x for x in validate(HEAD + entry(lines)) if "warning" not in x] == [
        f'r.yaml:{row}:5: {label(name)}: unknown field "skip_validaton"; did you mean "skip_validation"?'
    ]


@pytest.mark.parametrize("name", list(VALID))
def test_unknown_field_without_a_close_match_lists_the_allowed(validate, name):
    lines = VALID[name] + ["colour: blue"]
    row = len(lines) + 2
    provider_schema = json.loads((schema.schema_dir() / "providers" / f"{name}.schema.json").read_text())
    allowed = ", ".join(provider_schema["properties"])
    assert [x for x in validate(HEAD + entry(lines)) if "warning" not in x] == [
        f'r.yaml:{row}:5: {label(name)}: unknown field "colour"; allowed here: {allowed}'
    ]


@pytest.mark.parametrize("name", list(VALID))
def test_literal_secret_is_an_error_that_never_shows_the_value(validate, name):
    lines = VALID[name]
    secret_line = next(i for i, line in enumerate(lines) if "${" in line)
    field = lines[secret_line].split(":")[0]
    lines = lines[:secret_line] + [f"{field}: CANARY-hunter2"] + lines[secret_line + 1 :]
    out = validate(HEAD + entry(lines))
    row, col = secret_line + 3, 5 + len(field) + 2
    assert [line for line in out if "warning" not in line] == [
        f"r.yaml:{row}:{col}: {label(name)}: {field} holds a literal secret; write {field}: ${{VARIABLE}} "
        "and set that environment variable, or encrypt the file with sops"
    ]
    assert "CANARY" not in "\n".join(out)


@pytest.mark.parametrize("name", list(VALID))
def test_bad_variable_syntax(validate, name):
    lines = [line.replace("${", "$").replace("}", "") for line in VALID[name]]
    secret_line = next(i for i, line in enumerate(lines) if ": $" in line)
    field = lines[secret_line].split(":")[0]
    var = lines[secret_line].split("$")[1]
    out = [line for line in validate(HEAD + entry(lines)) if "warning" not in line]
    assert out == [
        f"r.yaml:{secret_line + 3}:{5 + len(field) + 2}: {label(name)}: {field} must be ${{VARIABLE}} "
        f"with braces: write {field}: ${{{var}}}"
    ]


@pytest.mark.parametrize("value", ["$9LIVES", "${NOT CLOSED", "$"])
def test_a_dollar_that_is_no_variable_states_the_rule(validate, value):
    lines = replace(VALID["ghcr"], "token", f'token: "{value}"')
    assert validate(HEAD + entry(lines)) == [
        f'r.yaml:5:12: {label("ghcr")}: token must be ${{VARIABLE}}, '
        "the name made of letters, digits and _ and not starting with a digit"
    ]


@pytest.mark.parametrize("name", list(VALID))
def test_missing_secret(validate, name):
    lines = [line for line in VALID[name] if "${" not in line]
    field = next(line for line in VALID[name] if "${" in line).split(":")[0]
    out = [line for line in validate(HEAD + entry(lines)) if "warning" not in line]
    assert out == [
        f'r.yaml:3:5: {label(name)}: missing required field "{field}": write {field}: ${{VARIABLE}} '
        "(read from the environment) or encrypt the file with sops"
    ]


@pytest.mark.parametrize(
    ("name", "field", "hint"),
    [
        ("ecr", "access_key_id", "the AWS Access Key ID"),
        ("dockerhub", "username", "the Docker Hub user name"),
        ("ghcr", "username", "the GitHub Container Registry user name"),
        ("quay", "username", "the Quay.io user name"),
        ("nexus", "username", "the Sonatype Nexus user name"),
        ("other", "username", "the Other OCI registry user name"),
        ("ecr", "endpoint", 'the Amazon ECR host, e.g. "123456789012.dkr.ecr.us-east-1.amazonaws.com"'),
        ("gar", "endpoint", 'the Google Artifact Registry host, e.g. "us-east1-docker.pkg.dev"'),
        ("gcr", "endpoint", 'the Google Container Registry host, e.g. "gcr.io"'),
        ("nexus", "endpoint", 'the Sonatype Nexus host, e.g. "nexus.example.net"'),
        ("other", "endpoint", 'the Other OCI registry host, e.g. "registry.example.com"'),
        ("dockerhub", "auth_type", "one of password, token"),
        ("gar", "auth_type", "one of serviceaccount, token"),
    ],
)
def test_missing_required_field_is_reported_at_the_entry(validate, name, field, hint):
    lines = replace(VALID[name], field, None)
    slug = None if field != "endpoint" else "x"
    out = [line for line in validate(HEAD + entry(lines)) if "warning" not in line]
    where = label(name, slug) if slug is None else f"registries[0] ({name})"
    assert out == [f'r.yaml:3:5: {where}: missing required field "{field}": {hint}']


@pytest.mark.parametrize("name", list(VALID))
def test_endpoint_with_a_scheme(validate, name):
    lines = replace(VALID[name], "endpoint", None)
    lines.insert(1, f"endpoint: https://{SLUG[name]}/v2/")
    out = [line for line in validate(HEAD + entry(lines)) if "warning" not in line]
    assert out == [
        f'r.yaml:4:15: {label(name, f"https://{SLUG[name]}/v2/")}: endpoint "https://{SLUG[name]}/v2/" '
        f'must be a host without a scheme; write "{SLUG[name]}"'
    ]


@pytest.mark.parametrize("name", list(VALID))
def test_endpoint_with_a_path(validate, name):
    lines = replace(VALID[name], "endpoint", None)
    lines.insert(1, f"endpoint: {SLUG[name]}/acme")
    out = [line for line in validate(HEAD + entry(lines)) if "warning" not in line]
    assert out == [
        f'r.yaml:4:15: {label(name, f"{SLUG[name]}/acme")}: endpoint "{SLUG[name]}/acme" must be host '
        f'or host:port, without a path; write "{SLUG[name]}" (image paths go in tests:)'
    ]


@pytest.mark.parametrize(
    ("name", "endpoint"),
    [("ecr", "ecr.us-east-1.amazonaws.com"), ("gar", "docker.pkg.dev.example.com"), ("gcr", "gcr.example.com")],
)
def test_endpoint_must_match_the_provider_hosts(validate, name, endpoint):
    lines = replace(VALID[name], "endpoint", f"endpoint: {endpoint}")
    title, example = PROVIDERS[name].title, PROVIDERS[name].endpoint_example
    out = [line for line in validate(HEAD + entry(lines)) if "warning" not in line]
    assert out == [
        f'r.yaml:4:15: {label(name, endpoint)}: endpoint "{endpoint}" is not '
        f'{"an" if name == "ecr" else "a"} {title} host; '
        f'expected a host like "{example}"'
    ]


def test_an_ecr_account_id_of_the_wrong_length_is_named(validate):
    # 1234567890 (10 digits) is hard to tell from 123456789012 (12) by eye
    lines = replace(VALID["ecr"], "endpoint", "endpoint: 1234567890.dkr.ecr.us-east-1.amazonaws.com")
    out = [line for line in validate(HEAD + entry(lines)) if "warning" not in line]
    assert len(out) == 1 and out[0].endswith(
        'expected a host like "123456789012.dkr.ecr.us-east-1.amazonaws.com": '
        'its account ID 1234567890 has 10 digits, an AWS account ID has 12')


@pytest.mark.parametrize("value", ["${GHCR_USER}", "$GHCR_USER"])
def test_a_username_written_as_a_variable_is_refused_not_sent_literally(validate, value):
    # only credential fields are read from the environment: this would be the user name
    lines = replace(VALID["ghcr"], "username", f"username: {value}")
    assert validate(HEAD + entry(lines)) == [
        f'r.yaml:4:15: {label("ghcr")}: username "{value}" is not read from the environment '
        "(only password, token, secret_access_key and service_account_key are): "
        "write the user name itself"
    ]
    lines = replace(VALID["ghcr"], "username", "username: robot$acme")  # Harbor's robot names
    assert validate(HEAD + entry(lines)) == []


def test_endpoint_that_is_not_a_host(validate):
    lines = replace(VALID["nexus"], "endpoint", "endpoint: nexus example")
    assert validate(HEAD + entry(lines)) == [
        'r.yaml:4:15: registries[0] (nexus "nexus example"): endpoint "nexus example" is not a valid host; '
        'write host or host:port, e.g. "nexus.example.net"'
    ]


@pytest.mark.parametrize("name", ["dockerhub", "gar"])
def test_wrong_auth_type_lists_the_allowed(validate, name):
    lines = replace(VALID[name], "auth_type", "auth_type: tokn")
    allowed = ", ".join(PROVIDERS[name].auth_modes)
    row = 3 + [x.split(":")[0] for x in lines].index("auth_type")
    assert [x for x in validate(HEAD + entry(lines)) if "warning" not in x] == [
        f'r.yaml:{row}:16: {label(name)}: auth_type "tokn" is not one of: {allowed}; did you mean "token"?'
    ]


def test_dockerhub_password_auth_takes_password_not_token(validate):
    lines = replace(VALID["dockerhub"], "auth_type", "auth_type: password")
    assert validate(HEAD + entry(lines)) == [
        'r.yaml:3:5: registries[0] (dockerhub "index.docker.io"): missing required field "password": '
        "write password: ${VARIABLE} (read from the environment) or encrypt the file with sops",
        'r.yaml:6:5: registries[0] (dockerhub "index.docker.io"): "token" does not go with auth_type: '
        "password (it takes password); remove it, or set auth_type: token",
    ]


def test_gar_token_auth_takes_token_not_a_key(validate):
    lines = replace(VALID["gar"], "auth_type", "auth_type: token") + ["token: ${GAR_TOKEN}"]
    assert validate(HEAD + entry(lines)) == [
        'r.yaml:5:16: warning: registries[0] (gar "us-east1-docker.pkg.dev"): GAR token auth uses '
        "short-lived access tokens (about an hour); use auth_type: serviceaccount with a service-account "
        "key for a lasting link",
        'r.yaml:6:5: registries[0] (gar "us-east1-docker.pkg.dev"): "service_account_key" does not go '
        "with auth_type: token (it takes token); remove it, or set auth_type: serviceaccount",
    ]


@pytest.mark.parametrize(("name", "wrong"), [("ghcr", "password"), ("quay", "token"), ("gcr", "password")])
def test_secret_in_a_field_the_provider_does_not_have(validate, name, wrong):
    lines = VALID[name] + [f"{wrong}: ${{X}}"]
    fields = " or ".join(f'"{m.secret_field}"' for m in PROVIDERS[name].auth_modes.values())
    out = [x for x in validate(HEAD + entry(lines)) if "warning" not in x]
    assert out == [
        f'r.yaml:{len(lines) + 2}:5: {label(name)}: unknown field "{wrong}"; '
        f"a {name} registry takes its secret in {fields}"
    ]


def test_unknown_provider_suggests_one(validate):
    assert validate(HEAD + entry(["provider: dockerhubb", "username: x"])) == [
        'r.yaml:3:15: registries[0]: provider "dockerhubb" is not one of: ecr, dockerhub, ghcr, gar, gcr, '
        'quay, nexus, other; did you mean "dockerhub"?'
    ]


@pytest.mark.parametrize(("written", "meant", "more"), [
    ("GitHub", "ghcr", ""), ("github", "ghcr", ""), ("docker", "dockerhub", ""),
    ("artifactory", "other", " (any registry that speaks the Docker Registry API, with username and password)"),
    ("Harbor", "other", " (any registry that speaks the Docker Registry API, with username and password)"),
])
def test_a_provider_by_another_name_suggests_regsync_s_name(validate, written, meant, more):
    assert validate(HEAD + entry([f"provider: {written}", "username: x"])) == [
        f'r.yaml:3:15: registries[0]: provider "{written}" is not one of: ecr, dockerhub, ghcr, gar, gcr, '
        f'quay, nexus, other; did you mean "{meant}"?{more}'
    ]


def test_a_tab_in_the_indentation_is_named(validate):
    assert validate(HEAD + "\t- provider: ghcr\n") == [
        "r.yaml:3:1: a tab character: YAML indents with spaces only; replace the tab with spaces"
    ]
    assert validate(HEAD + "  - provider: ghcr\n\t  username: x\n") == [
        "r.yaml:4:1: a tab character: YAML indents with spaces only; replace the tab with spaces"
    ]


def test_a_provider_or_auth_type_in_capitals_suggests_the_lowercase_one(validate):
    # difflib compares case too: "GHCR" got no suggestion at all
    assert validate(HEAD + entry(["provider: GHCR", "username: x", "token: ${T}"])) == [
        'r.yaml:3:15: registries[0]: provider "GHCR" is not one of: ecr, dockerhub, ghcr, gar, gcr, '
        'quay, nexus, other; did you mean "ghcr"?'
    ]
    out = validate(HEAD + entry(["provider: dockerhub", "auth_type: TOKEN", "username: x", "token: ${T}"]))
    assert out == [
        'r.yaml:4:16: registries[0] (dockerhub "index.docker.io"): auth_type "TOKEN" is not one of: password, token; '
        'did you mean "token"?'
    ]


def test_missing_provider(validate):
    assert validate(HEAD + entry(["username: x"])) == [
        'r.yaml:3:5: registries[0]: missing required field "provider": one of ecr, dockerhub, ghcr, gar, '
        "gcr, quay, nexus, other"
    ]


def test_wrong_types_of_the_common_fields(validate):
    lines = VALID["ghcr"] + ["app_ids: abc", "tests: [1]", "skip_validation: maybe", "slug: 42"]
    assert validate(HEAD + entry(lines)) == [
        'r.yaml:6:14: registries[0] (ghcr "ghcr.io"): app_ids must be a list, not a string',
        'r.yaml:7:13: registries[0] (ghcr "ghcr.io"): tests[0] must be a string, not a number',
        'r.yaml:8:22: registries[0] (ghcr "ghcr.io"): skip_validation must be true or false, not a string',
        'r.yaml:9:11: registries[0] (ghcr "ghcr.io"): slug must be a string, not a number',
    ]


def test_duplicate_app_ids_and_bad_slug(validate):
    lines = VALID["quay"] + ["app_ids: [app1, app2, app1]", "slug: -bad slug"]
    assert validate(HEAD + entry(lines)) == [
        'r.yaml:6:27: registries[0] (quay "-bad slug"): app_ids lists "app1" twice (also at line 6); list it once',
        'r.yaml:7:11: registries[0] (quay "-bad slug"): slug "-bad slug" may hold only letters, digits, ".", '
        '"_", ":" and "-", starting with a letter or digit',
    ]


def test_document_level_errors_have_no_breadcrumb(validate):
    text = "version: '1'\nregistrys: []\nsettings:\n  prune: 1\n  max_deletes: -2\n  ignore: [legacy-*, 3]\n"
    assert validate(text) == [
        'r.yaml:1:1: missing required field "registries"',
        'r.yaml:1:10: version must be 1, not "1" (the only format this regsync reads)',
        'r.yaml:2:1: unknown field "registrys"; did you mean "registries"?',
        "r.yaml:4:10: settings: prune must be true or false, not a number",
        "r.yaml:5:16: settings: max_deletes must be 0 or more, not -2",
        "r.yaml:6:22: settings: ignore[1] must be a string, not a number",
    ]


def test_a_non_mapping_file_and_entry(validate):
    assert validate("- a\n- b\n") == [
        "r.yaml:1:1: the file must be a mapping (version: 1, registries: ...), not a list"
    ]
    assert validate(HEAD + "  - ghcr\n") == [
        "r.yaml:3:5: registries[0]: each entry of registries must be a mapping (provider: ...), not a string"
    ]


def test_every_error_is_reported_sorted(validate):
    text = HEAD + entry(["provider: ghcr", "usernme: x", "token: lit"]) + entry(["provider: quay", "username: 1"])
    assert validate(text) == [
        'r.yaml:3:5: registries[0] (ghcr "ghcr.io"): missing required field "username": '
        "the GitHub Container Registry user name",
        'r.yaml:4:5: registries[0] (ghcr "ghcr.io"): unknown field "usernme"; did you mean "username"?',
        'r.yaml:5:12: registries[0] (ghcr "ghcr.io"): token holds a literal secret; write token: ${VARIABLE} '
        "and set that environment variable, or encrypt the file with sops",
        'r.yaml:6:5: registries[1] (quay "quay.io"): missing required field "password": write password: '
        "${VARIABLE} (read from the environment) or encrypt the file with sops",
        'r.yaml:7:15: registries[1] (quay "quay.io"): username must be a string, not a number',
    ]


def test_schemas_agree_with_the_provider_table():
    base = schema.schema_dir()
    root = json.loads((base / "registries.schema.json").read_text())
    assert root["$defs"]["registry"]["properties"]["provider"]["enum"] == list(PROVIDERS)
    for name, provider in PROVIDERS.items():
        doc = json.loads((base / "providers" / f"{name}.schema.json").read_text())
        assert doc["$id"] == f"{name}.schema.json"
        assert doc["additionalProperties"] is False
        assert doc["properties"]["provider"]["const"] == name
        assert ("endpoint" in doc["required"]) == (provider.default_endpoint is None)
        if provider.endpoint_pattern:
            assert doc["properties"]["endpoint"]["pattern"] == provider.endpoint_pattern
        if provider.has_auth_type_field:
            assert doc["properties"]["auth_type"]["enum"] == list(provider.auth_modes)
        for key, prop in doc["properties"].items():
            assert "description" in prop or "$ref" in prop, f"{name}.{key} has no description"


def test_every_field_has_a_description_for_editors():
    base = schema.schema_dir()
    common = json.loads((base / "common.schema.json").read_text())
    for key, definition in common["$defs"].items():
        assert definition["description"], key
    root = json.loads((base / "registries.schema.json").read_text())
    for key, prop in {**root["properties"], **root["properties"]["settings"]["properties"]}.items():
        assert prop["description"], key


def test_the_validator_resolves_refs_from_files_only():
    from referencing.exceptions import Unresolvable

    registry = schema.validator()._resolver._registry
    with pytest.raises(Unresolvable):
        registry.resolver().lookup("https://example.com/nowhere.json")
    assert schema.validator() is schema.validator()  # built once


def test_schema_dir_is_the_repository_schema_in_a_source_checkout():
    assert (schema.schema_dir() / "registries.schema.json").is_file()
    assert sorted(p.stem.split(".")[0] for p in (schema.schema_dir() / "providers").glob("*.json")) == sorted(PROVIDERS)


def test_the_per_entry_fast_path_finds_exactly_what_the_document_schema_finds():
    """validate checks each entry against its provider's schema directly; editors use the
    whole document schema with if/then. Both must report the same errors."""
    docs = [
        {"version": 1, "registries": [{"provider": name, "colour": 1, "slug": 5}] * 2}
        for name in [*VALID, "nope"]
    ] + [
        {"version": 2, "registrys": [], "settings": {"prune": 1, "max_deletes": -1, "ignore": [3]}},
        {"version": 1, "registries": ["x", {}, {"provider": "gar", "auth_type": "token", "service_account_key": "a"}]},
        {"version": 1, "registries": [{"provider": "dockerhub", "auth_type": "password", "token": "${X}",
                                       "app_ids": ["a", "a"], "endpoint": "https://x/y"}]},
        [], None,
    ]

    def key(path, error):
        return (tuple(path), error.validator, json.dumps(error.validator_value, sort_keys=True, default=str))

    for doc in docs:
        # as sets: for a non-mapping entry the if/then chain repeats "must be a mapping" per branch
        fast = sorted({key(p, e) for p, e in schema.iter_errors(doc)})
        full = sorted({key(e.absolute_path, e) for e in schema.validator().iter_errors(doc)})
        assert fast == full, doc
        assert fast or doc is None
