"""The registries file as a Config: semantic checks beyond the schema, the mapping onto the
API's terms, and what `regsync validate` reports for each file."""

from __future__ import annotations

import pytest

from reconciler.config import check_files, load_config
from reconciler.errors import ConfigError
from reconciler.model import Position, SecretRef, Settings

HEAD = "version: 1\nregistries:\n"


@pytest.fixture
def write(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def put(text: str, name: str = "r.yaml") -> str:
        (tmp_path / name).write_text(text)
        return name

    return put


def lines(path: str, **kwargs) -> list[str]:
    return [str(d) for d in check_files([path], **kwargs)]


def test_config_maps_every_provider_onto_the_api_terms(write):
    path = write(
        HEAD
        + "  - provider: ecr\n    endpoint: 123456789012.dkr.ecr.eu-west-1.amazonaws.com\n"
        "    access_key_id: AKIA1\n    secret_access_key: ${AWS}\n"
        "  - provider: dockerhub\n    slug: dh\n    auth_type: password\n    username: acme\n    password: ${DH}\n"
        "    app_ids: [a1, a2]\n    tests: [acme/api:v1]\n    skip_validation: true\n"
        "  - provider: gar\n    endpoint: us-docker.pkg.dev\n    auth_type: token\n    token: ${GART}\n"
        "  - provider: gcr\n    endpoint: eu.gcr.io\n    service_account_key: ${GCRK}\n"
        "  - provider: ghcr\n    username: u\n    token: ${GH}\n    app_ids: []\n"
    )
    config = load_config(path)
    got = [(r.provider, r.slug, r.endpoint, r.auth_type, r.username, r.secret_ref) for r in config.registries]
    assert got == [
        ("ecr", "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
         "accesskey", "AKIA1", SecretRef("secret_access_key", env_var="AWS")),
        ("dockerhub", "dh", "index.docker.io", "password", "acme", SecretRef("password", env_var="DH")),
        ("gar", "us-docker.pkg.dev", "us-docker.pkg.dev", "token", "oauth2accesstoken",
         SecretRef("token", env_var="GART")),
        ("gcr", "eu.gcr.io", "eu.gcr.io", "serviceaccount", "_json_key",
         SecretRef("service_account_key", env_var="GCRK")),
        ("ghcr", "ghcr.io", "ghcr.io", "token", "u", SecretRef("token", env_var="GH")),
    ]
    dh = config.registries[1]
    assert (dh.app_ids, dh.tests, dh.skip_validation) == (("a1", "a2"), ("acme/api:v1",), True)
    assert config.registries[0].app_ids is None  # omitted: every app
    assert config.registries[4].app_ids == ()
    assert dh.position == Position("r.yaml", 7, 5)
    assert dh.label == 'registries[1] (dockerhub "dh")'
    assert all(r.secret is None for r in config.registries)
    assert config.settings == Settings() and config.sops is False
    assert [str(w) for w in config.warnings] == [
        'r.yaml:17:16: warning: registries[2] (gar "us-docker.pkg.dev"): GAR token auth uses short-lived access '
        "tokens (about an hour); use auth_type: serviceaccount with a service-account key for a lasting link",
        'r.yaml:19:15: warning: registries[3] (gcr "eu.gcr.io"): Google Container Registry is deprecated by Google; '
        "move to Google Artifact Registry (provider: gar)",
    ]


def test_settings_are_read(write):
    path = write("version: 1\nsettings:\n  prune: true\n  max_deletes: 0\n  ignore: [legacy-*, old]\nregistries: []\n")
    config = load_config(path)
    assert config.settings == Settings(prune=True, max_deletes=0, ignore=("legacy-*", "old"))
    assert config.registries == ()


def test_load_config_raises_with_every_error(write):
    path = write(HEAD + "  - provider: ghcr\n    username: u\n    token: oops\n  - provider: quay\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(d) for d in info.value.diagnostics] == [
        'r.yaml:5:12: registries[0] (ghcr "ghcr.io"): token holds a literal secret; write token: ${VARIABLE} '
        "and set that environment variable, or encrypt the file with sops",
        'r.yaml:6:5: registries[1] (quay "quay.io"): missing required field "password": write password: ${VARIABLE} '
        "(read from the environment) or encrypt the file with sops",
        'r.yaml:6:5: registries[1] (quay "quay.io"): missing required field "username": the Quay.io user name',
    ]
    assert "oops" not in str(info.value)


def test_duplicate_slugs_name_the_first_line(write):
    path = write(
        HEAD
        + "  - provider: ghcr\n    username: a\n    token: ${A}\n"
        "  - provider: ghcr\n    username: b\n    token: ${B}\n"
        "  - provider: quay\n    slug: ghcr.io\n    username: c\n    password: ${C}\n"
    )
    assert lines(path) == [
        'r.yaml:6:5: registries[1] (ghcr "ghcr.io"): slug "ghcr.io" (the endpoint, as slug: is omitted) is already '
        "used by registries[0] at line 3; each registry needs its own slug",
        'r.yaml:10:11: registries[2] (quay "ghcr.io"): slug "ghcr.io" is already used by registries[0] at line 3; '
        "each registry needs its own slug",
    ]


def test_the_slug_test_is_reserved(write):
    path = write(HEAD + "  - provider: other\n    endpoint: r.example.com\n    slug: test\n"
                 "    username: u\n    password: ${P}\n")
    assert lines(path) == [
        'r.yaml:5:11: registries[0] (other "test"): slug "test" is reserved: it collides with the Vendor API\'s '
        "PUT /v3/external_registry/test route; choose another slug"
    ]


def test_invalid_image_references(write):
    path = write(HEAD + "  - provider: ghcr\n    username: u\n    token: ${T}\n"
                 "    tests: [acme/api, ok/img:v1, 'Acme/x:']\n")
    assert lines(path) == [
        'r.yaml:6:13: registries[0] (ghcr "ghcr.io"): tests[0]: "acme/api" has no tag or digest; write '
        "acme/api:<tag> or acme/api@sha256:<64 hex digits>",
        'r.yaml:6:34: registries[0] (ghcr "ghcr.io"): tests[2]: tag "" of "Acme/x:" may hold only letters, digits, '
        '"_", "." and "-" (at most 128, not starting with "." or "-")',
    ]


def test_enc_value_in_a_file_without_sops_metadata(write):
    path = write(HEAD + "  - provider: ghcr\n    username: u\n    token: ENC[AES256_GCM,data:abc,type:str]\n")
    assert lines(path) == [
        'r.yaml:5:12: registries[0] (ghcr "ghcr.io"): token holds a sops ENC[...] value but the file has no sops '
        "metadata; encrypt the whole file with sops encrypt instead of pasting values"
    ]


SOPS_BLOCK = "sops:\n  age: []\n  mac: ENC[AES256_GCM,data:x,type:str]\n  version: 3.11.0\n"


def test_sops_file_validates_without_keys(write):
    path = write(HEAD + "  - provider: ghcr\n    username: u\n    token: ENC[AES256_GCM,data:abc,type:str]\n"
                 + SOPS_BLOCK)
    assert lines(path) == []
    config = load_config(path)
    assert config.sops is True
    assert config.registries[0].secret_ref == SecretRef("token", encrypted=True)


def test_secret_left_in_clear_in_a_sops_file(write):
    path = write(HEAD + "  - provider: ghcr\n    username: u\n    token: CANARY-clear\n" + SOPS_BLOCK)
    out = lines(path)
    assert out == [
        'r.yaml:5:12: registries[0] (ghcr "ghcr.io"): token is not encrypted: this sops file holds it in clear; '
        "make sops encrypt it (--encrypted-regex '^(password|token|secret_access_key|service_account_key)$') "
        "or write token: ${VARIABLE}"
    ]


def test_sops_file_with_every_value_encrypted(write):
    path = write(
        "version: ENC[AES256_GCM,data:MQ==,type:int]\nregistries:\n  - provider: ENC[AES256_GCM,data:x,type:str]\n"
        + SOPS_BLOCK
    )
    assert lines(path) == [
        "r.yaml:1:10: sops encrypted version, which is not a secret; regsync must read it without keys: "
        "re-encrypt with sops encrypt --encrypted-regex '^(password|token|secret_access_key|service_account_key)$'"
    ]


def test_check_env_reports_unset_and_empty_variables_never_values(write):
    path = write(
        HEAD
        + "  - provider: ghcr\n    username: u\n    token: ${GH_TOKEN}\n"
        "  - provider: quay\n    username: u\n    password: ${QUAY_PW}\n"
        "  - provider: nexus\n    endpoint: n.example.net\n    username: u\n    password: ${NEXUS_PW}\n"
    )
    env = {"GH_TOKEN": "CANARY-set", "QUAY_PW": "  "}
    assert lines(path, check_env=True, env=env) == [
        'r.yaml:8:15: registries[1] (quay "quay.io"): password: environment variable QUAY_PW is empty',
        'r.yaml:12:15: registries[2] (nexus "n.example.net"): password: environment variable NEXUS_PW is not set',
    ]
    assert lines(path) == []  # validate alone needs no secrets


def test_files_are_reported_in_order_with_the_path_as_given(write, tmp_path):
    (tmp_path / "sub").mkdir()
    write(HEAD + "  - provider: quay\n    username: u\n    password: ${P}\n", "sub/a.yaml")
    write("version: 1\nregistries: {}\n", "b.yaml")
    assert lines("./sub/a.yaml") == []
    assert [str(d) for d in check_files(["b.yaml", "missing.yaml", "sub", "./sub/a.yaml"])] == [
        "b.yaml:2:13: registries must be a list, not a mapping",
        "missing.yaml:1:1: file not found; write one, or make it from the team's registries with: "
        "regsync import -o missing.yaml",
        "sub:1:1: is a directory, not a registries file",
    ]


def test_a_missing_yaml_file_beside_a_yml_one_names_it(write, tmp_path):
    write("version: 1\nregistries: []\n", "registries.yml")
    assert [str(d) for d in check_files(["registries.yaml"])] == [
        "registries.yaml:1:1: file not found, but registries.yml is there: "
        "name it (regsync validate registries.yml; -c registries.yml for the other commands)"
    ]


def test_empty_and_non_utf8_files(write, tmp_path):
    write("# nothing\n", "empty.yaml")
    (tmp_path / "latin1.yaml").write_bytes(b"version: 1\nregistries: []\n# caf\xe9\n")
    assert lines("empty.yaml") == ["empty.yaml:1:1: the file is empty; start it with version: 1 and registries:"]
    assert lines("latin1.yaml") == ["latin1.yaml:3:6: the file is not UTF-8 text"]


def test_yaml_errors_come_through_check_files(write):
    path = write(HEAD + "  - provider: ghcr\n    provider: quay\n")
    assert lines(path) == ['r.yaml:4:5: duplicate key "provider" (first at line 3); keep only one']


def test_example_file_is_valid():
    import pathlib

    example = pathlib.Path(__file__).resolve().parent.parent / "registries.yaml.example"
    out = check_files([str(example)])
    assert [d.severity for d in out] == ["warning"]  # gcr is deprecated
    config = load_config(str(example))
    assert sorted({r.provider for r in config.registries}) == sorted(
        ["ecr", "dockerhub", "ghcr", "gar", "gcr", "quay", "nexus", "other"]
    )


def test_a_block_scalar_line_break_is_not_a_valid_slug_endpoint_or_secret(write):
    # `slug: |` keeps its final newline; Python's `$` matched before it, so validate and
    # plan accepted "abc\n" as a slug, which editors (ECMA `$`) already reject.
    path = write(
        HEAD
        + "  - provider: ghcr\n    slug: |\n      abc\n    username: u\n    token: ${T}\n"
        "  - provider: nexus\n    endpoint: \"nexus.local\\n\"\n    username: u\n    password: |\n      ${P}\n"
    )
    assert lines(path) == [
        'r.yaml:4:11: registries[0] (ghcr "abc\\n"): slug "abc\\n" may hold only letters, digits, ".", "_", '
        '":" and "-", starting with a letter or digit',
        'r.yaml:9:15: registries[1] (nexus "nexus.local\\n"): endpoint "nexus.local\\n" is not a valid host; '
        'write host or host:port, e.g. "nexus.example.net"',
        'r.yaml:11:15: registries[1] (nexus "nexus.local\\n"): password has a line break or spaces around its '
        "value (from | or quotes?); write password: ${VARIABLE} on one line",
    ]
    with pytest.raises(ConfigError):
        load_config(path)


def test_control_characters_from_the_file_are_escaped_in_every_line(write):
    path = write(HEAD + '  - provider: ghcr\n    slug: "a\\e[2Jb"\n    username: u\n    token: ${T}\n    "x\\ty": 1\n')
    out = lines(path)
    assert len(out) == 2 and all(line.isprintable() for line in out)
    assert out[0].startswith('r.yaml:4:11: registries[0] (ghcr "a\\x1b[2Jb"): slug "a\\u001b[2Jb" may hold')
    assert out[1].startswith('r.yaml:7:5: registries[0] (ghcr "a\\x1b[2Jb"): unknown field "x\\ty"')


_FUZZ_PIECES = [
    *"&*!|-:{}[],'\"%@`\t\n#? \\$~0.eE+_", "<<: *a", "&a ", "*a", "!!str ", "!!bool ", "!!int ",
    "!!float ", "!!binary ", "!!python/object:os.system ", "---\n", "\ufeff", "\u2028", "é", "\x1b", "\r",
    "? ", "[*a, *a]", "\n  - ", ": |\n  ", "99999999999999999999", "1.5", "~", "true",
]


@pytest.mark.parametrize("seed", range(4))
def test_mutated_example_files_give_diagnostics_never_a_crash_and_validate_agrees_with_load(tmp_path, seed):
    """A seeded fuzz: the example file with a few characters inserted, deleted or replaced.
    Whatever comes out, validate reports one printable line per problem and load_config
    (what plan runs) fails exactly when validate reports an error."""
    import pathlib
    import random

    example = (pathlib.Path(__file__).resolve().parent.parent / "registries.yaml.example").read_text()
    rng = random.Random(seed)
    path = str(tmp_path / "r.yaml")
    for _ in range(150):
        text = list(example)
        for _ in range(rng.randint(1, 5)):
            i = rng.randrange(len(text))
            op = rng.random()
            if op < 0.4:
                text.insert(i, rng.choice(_FUZZ_PIECES))
            elif op < 0.7:
                del text[i]
            else:
                text[i] = rng.choice(_FUZZ_PIECES)
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(text))
        out = check_files([path], check_env=True, env={})
        assert all(str(d).isprintable() for d in out)
        errors = [d for d in check_files([path]) if d.severity == "error"]
        try:
            load_config(path)
        except ConfigError as exc:
            assert errors and exc.diagnostics == errors
        else:
            assert not errors


def test_an_endpoint_port_out_of_range_is_an_error(write):
    # the schema's host pattern takes any 1-5 digits; 99999 passed validate and plan
    path = write(
        HEAD + "  - provider: nexus\n    endpoint: nexus.local:99999\n    username: u\n    password: ${P}\n"
        "  - provider: other\n    endpoint: \"[::1]:0\"\n    username: u\n    password: ${P}\n"
        "  - provider: other\n    endpoint: r.example.com:65535\n    username: u\n    password: ${P}\n"
    )
    assert lines(path) == [
        'r.yaml:4:15: registries[0] (nexus "nexus.local:99999"): endpoint "nexus.local:99999" has port 99999; '
        "a port is 1 to 65535",
        'r.yaml:8:15: registries[1] (other "[::1]:0"): endpoint "[::1]:0" has port 0; a port is 1 to 65535',
    ]
    with pytest.raises(ConfigError):
        load_config(path)
