"""Every sandbox response checked against the swagger contract of the Vendor API.

The contract (Swagger 2.0) is turned into JSON Schema per operation and status code:
``$ref``s to ``responses``/``definitions`` are followed, and the objects are closed
(``additionalProperties: false``) so a misspelt or invented field fails. Two documented
facts of the real API that Swagger 2.0 cannot say are added on top (see ``EXTRAS``).
The copy in ``tests/contract/`` is preferred, so the test never depends on a path
outside the clone; ``../shared/reference/`` must not have drifted from it.
"""

from __future__ import annotations

import copy
import os
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import jsonschema
import pytest
import yaml

from reconciler.sandbox.faults import FaultRule
from reconciler.sandbox.server import SandboxServer

NAME = "vendor-api-v3-external-registries.swagger.yml"
COPY = Path(__file__).resolve().parent / "contract" / NAME
SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference" / NAME

#: Facts of the real API outside what Swagger 2.0 can express (providers.md): Go's nil
#: slices are sent as ``null`` (``{"external_registries": null}`` for a team with none),
#: and registries carry ``lastUsedAt`` (null until used), which the definition omits.
EXTRAS = {"ExternalRegistry": {"lastUsedAt": {"type": ["string", "null"], "format": "date-time"}}}

#: Statuses the sandbox answers that the contract does not list, and the response they
#: are shaped like. Deleting an unknown slug is a 404, as for every by-slug operation.
DEVIATIONS = {("deleteExternalRegistry", "404"): "responseErrNotFound"}

#: Statuses the contract lists that the sandbox has no way to produce by itself (no
#: input of these operations is wrong; a read-only token may read). Fault rules make
#: them; ``test_injected_errors_are_shaped_like_the_contract`` checks those bodies.
NOT_PRODUCED = {
    ("listExternalRegistries", "400"), ("listExternalRegistries", "403"),
    ("listExternalRegistries", "404"), ("getECRIAMConfig", "403"),
    ("externalRegistryLogs", "403"), ("externalRegistryLogs", "404"),
    ("deleteExternalRegistry", "400"),
}


def load_contract() -> dict:
    return yaml.safe_load(COPY.read_text())


CONTRACT = load_contract()
FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _rfc3339(value) -> bool:
    if not isinstance(value, str):
        return True
    if "T" not in value or not (value.endswith("Z") or value[-6] in "+-"):
        raise ValueError(f"{value!r} is not an RFC 3339 date-time")
    datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


def to_json_schema(node, *, definition: str | None = None):
    """A Swagger 2.0 schema node as closed JSON Schema, ``$ref``s inlined."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        _, section, name = node["$ref"].split("/")
        target = CONTRACT[section][name]
        if section == "responses":
            return to_json_schema(target.get("schema"))
        return to_json_schema(target, definition=name)
    out = {k: to_json_schema(v) for k, v in node.items()
           if not k.startswith("x-") and k != "description"}
    if out.get("type") == "array":
        out["type"] = ["array", "null"]
    if out.get("type") == "object":
        out.setdefault("properties", {})
        out["properties"].update(copy.deepcopy(EXTRAS.get(definition, {})))
        out["additionalProperties"] = False
    return out


def operations() -> dict[str, dict]:
    """operationId -> {"method", "path", "responses": {status: JSON Schema | None}}."""
    ops = {}
    for path, methods in CONTRACT["paths"].items():
        for method, op in methods.items():
            responses = {status: to_json_schema(ref) for status, ref in op["responses"].items()}
            ops[op["operationId"]] = {"method": method.upper(), "path": path, "responses": responses}
    for (op_id, status), ref in DEVIATIONS.items():
        ops[op_id]["responses"][status] = to_json_schema({"$ref": f"#/responses/{ref}"})
    return ops


OPERATIONS = operations()
ROUTES = {(op["method"], op["path"]): op_id for op_id, op in OPERATIONS.items()}


def operation_of(method: str, path: str) -> str:
    """The operationId a request path (under /vendor/v3) belongs to."""
    if (method, path) in ROUTES:
        return ROUTES[(method, path)]
    return ROUTES[(method, "/external_registry/{slug}")]


def check(response: httpx.Response, path: str, seen: set | None = None) -> None:
    """The response's status is listed for its operation and its body fits the schema."""
    op_id = operation_of(response.request.method, path)
    status = str(response.status_code)
    listed = OPERATIONS[op_id]["responses"]
    assert status in listed, f"{op_id} answered {status}; the contract lists {sorted(listed)}"
    schema = listed[status]
    if schema is None:
        assert response.content == b"", f"{op_id} {status} must have no body"
    else:
        assert response.headers["Content-Type"] == "application/json"
        jsonschema.validate(response.json(), schema, format_checker=FORMATS)
    if seen is not None:
        seen.add((op_id, status))


def test_the_copy_is_the_shared_contract():
    if not SHARED.exists():
        pytest.skip(f"no shared contract beside the clone ({SHARED}); the copy is used")
    assert COPY.read_bytes() == SHARED.read_bytes()


def test_schemas_are_closed_and_refs_resolved():
    create = OPERATIONS["createExternalRegistry"]["responses"]["201"]
    registry = create["properties"]["external_registry"]
    assert registry["additionalProperties"] is False and "lastUsedAt" in registry["properties"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"external_registry": {"password": "x"}}, create)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"external_registry": {"createdAt": "yesterday"}}, create,
                            format_checker=FORMATS)
    assert OPERATIONS["deleteExternalRegistry"]["responses"]["204"] is None


@pytest.fixture
def seen():
    return set()


def test_every_sandbox_response_fits_the_contract(sandbox, registry_basic, seen):
    reg = registry_basic
    slug = quote(reg.endpoint, safe="")
    good = {"provider": "other", "endpoint": reg.endpoint, "username": reg.username,
            "password": reg.password, "appIds": ["app-1"]}
    headers = {"Authorization": sandbox.token}
    ro = {"Authorization": sandbox.readonly_token}
    nobody = {"Authorization": "wrong-token"}
    with httpx.Client(base_url=sandbox.origin + "/v3", headers=headers, timeout=10) as c:
        def call(method, path, **kw):
            response = c.request(method, path, **kw)
            check(response, path.split("?")[0], seen)
            return response

        assert call("GET", "/external_registries").json() == {"external_registries": None}
        assert call("POST", "/external_registry", json=good).status_code == 201
        assert call("POST", "/external_registry", json=dict(good, slug="s", skipValidation=True,
                                                            appIds=None)).status_code == 201
        assert call("POST", "/external_registry", json=good).status_code == 400  # duplicate
        assert call("POST", "/external_registry", json={"endpoint": "x"}).status_code == 400
        assert call("POST", "/external_registry", json=dict(good, slug="w", password="wrong")).status_code == 400
        assert call("GET", "/external_registries").status_code == 200
        assert call("PUT", f"/external_registry/{slug}", json={"username": reg.username}).status_code == 200
        assert call("PUT", f"/external_registry/{slug}", json={"provider": "nope"}).status_code == 400
        assert call("PUT", "/external_registry/nope", json={}).status_code == 404
        for image in ("test/hello:v1", "test/hello:nope"):
            assert call("PUT", "/external_registry/test",
                        json={"endpoint": reg.endpoint, "image": image}).status_code == 200
        assert call("PUT", "/external_registry/test", json={"endpoint": "x"}).status_code == 400
        assert call("PUT", "/external_registry/test",
                    json={"endpoint": "nope.example.com", "image": "a/b:1"}).status_code == 404
        assert call("GET", f"/external_registry/logs?slug={slug}").json()["logs"]
        assert call("GET", "/external_registry/logs?Slug=none").json() == {"logs": []}
        assert call("GET", "/external_registry/logs").status_code == 400
        assert call("GET", "/external_registry/iam").status_code == 200
        assert call("DELETE", "/external_registry/s").status_code == 204
        assert call("DELETE", "/external_registry/nope").status_code == 404
        for method, path in [("GET", "/external_registries"), ("POST", "/external_registry"),
                             ("GET", "/external_registry/iam"), ("GET", "/external_registry/logs"),
                             ("PUT", "/external_registry/test"), ("PUT", "/external_registry/nope"),
                             ("DELETE", "/external_registry/nope")]:
            assert call(method, path, headers=nobody).status_code == 401
            if method != "GET":
                assert call(method, path, headers=ro, json={}).status_code == 403
        assert call("GET", "/external_registries").status_code == 200

    every = {(op_id, status) for op_id, op in OPERATIONS.items() for status in op["responses"]}
    assert seen == every - NOT_PRODUCED, "a contract status is neither produced nor excused"


@pytest.mark.parametrize("op_id", sorted(OPERATIONS))
def test_injected_errors_are_shaped_like_the_contract(sandbox, op_id):
    """Fault rules answer the contract's error shapes, so client tests see real bodies."""
    op = OPERATIONS[op_id]
    path = op["path"].replace("{slug}", "acme")
    errors = [s for s in op["responses"] if int(s) >= 400]
    assert errors
    with httpx.Client(base_url=sandbox.origin + "/v3", timeout=5,
                      headers={"Authorization": sandbox.token}) as c:
        for status in errors:
            sandbox.faults.add(FaultRule(method=op["method"], status=int(status)))
            check(c.request(op["method"], path, json={}), op["path"])


def test_a_registry_after_restart_still_fits(tmp_path):
    key = os.urandom(32)
    db = str(tmp_path / "s.db")
    with SandboxServer(db=db, token="t", key=key) as s, httpx.Client(
            base_url=s.origin + "/v3", headers={"Authorization": "t"}, timeout=5) as c:
        c.post("/external_registry", json={"endpoint": "e.example.com", "username": "u",
                                           "password": "p", "skipValidation": True})
    with SandboxServer(db=db, token="t", key=key) as s, httpx.Client(
            base_url=s.origin + "/v3", headers={"Authorization": "t"}, timeout=5) as c:
        response = c.get("/external_registries")
        check(response, "/external_registries")
        assert len(response.json()["external_registries"]) == 1
