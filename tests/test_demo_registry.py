"""The demo registry: a real HTTP server on loopback, checked with the real pull check."""

from __future__ import annotations

import uuid

import httpx
import pytest

from reconciler.oci import PullCheck, check_login, check_pull
from reconciler.sandbox.demo_registry import DemoRegistry, build_image
from reconciler.secretvalue import Secret

PASSWORD = f"CANARY-{uuid.uuid4()}"


@pytest.fixture
def demo():
    registry = DemoRegistry(username="demo", password=PASSWORD).start()
    try:
        yield registry
    finally:
        registry.stop()


def secret(_demo) -> Secret:
    return Secret(PASSWORD)


def test_pull_check_succeeds_with_the_demo_image_digest(demo):
    assert demo.image == "demo/hello:v1"
    result = check_pull(demo.endpoint, demo.image, username="demo", password=secret(demo))
    assert result == PullCheck("ok", 200, demo.digest, "")
    by_digest = check_pull(demo.endpoint, f"demo/hello@{demo.digest}", username="demo", password=secret(demo))
    assert by_digest.digest == demo.digest


def test_the_digest_is_the_same_on_every_build(demo):
    assert build_image().digest == demo.digest
    assert DemoRegistry(username="x", password="y").digest == demo.digest


def test_wrong_password_is_refused(demo):
    result = check_pull(demo.endpoint, demo.image, username="demo", password=Secret("wrong"))
    assert (result.outcome, result.status) == ("unauthorized", 401)
    assert PASSWORD not in repr(result)
    assert check_login(demo.endpoint, username="demo", password=Secret("wrong")).outcome == "unauthorized"
    assert check_login(demo.endpoint, username="demo", password=secret(demo)).ok


def test_unknown_tag_and_repository_are_not_found(demo):
    for image in ("demo/hello:v2", "demo/other:v1"):
        result = check_pull(demo.endpoint, image, username="demo", password=secret(demo))
        assert (result.outcome, result.status) == ("not_found", 404)


def test_blobs_are_served_and_writes_refused(demo):
    auth = ("demo", PASSWORD)
    with httpx.Client(base_url=f"http://{demo.endpoint}", auth=auth, timeout=5) as client:
        for digest, data in demo.built.blobs.items():
            response = client.get(f"/v2/demo/hello/blobs/{digest}")
            assert (response.status_code, response.content) == (200, data)
        assert client.get("/v2/demo/hello/blobs/sha256:" + "0" * 64).status_code == 404
        assert client.put("/v2/demo/hello/manifests/v9", content=b"{}").status_code == 405
        anonymous = httpx.get(f"http://{demo.endpoint}/v2/", timeout=5)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="regsync-demo"'


def test_stop_frees_the_port(demo):
    endpoint = demo.endpoint
    demo.stop()
    result = check_pull(endpoint, "demo/hello:v1", username="demo", password=Secret("x"), timeout=2)
    assert (result.outcome, result.status) == ("unreachable", 0)
