"""Plain-data builders for the plan tests: a registry as the file wants it, as the API
has it, and the canary secret they carry by default."""

from __future__ import annotations

import uuid

from reconciler.model import DesiredRegistry, RemoteRegistry, SecretRef
from reconciler.secretvalue import Secret
from reconciler.state import Fingerprinter

CANARY = f"CANARY-{uuid.uuid4()}"
FP = Fingerprinter(b"test-key")

#: A registries file with one Docker Hub registry whose token is ${DH_TOKEN}, accepted
#: by the sandbox without a check (for tests of the CLI's plan and apply).
HUB_YAML = """\
version: 1
registries:
  - provider: dockerhub
    slug: hub
    auth_type: token
    username: acme-bot
    token: ${DH_TOKEN}
    skip_validation: true
"""
T0 = "2026-01-01T00:00:00Z"


def want(slug, index=0, *, secret=CANARY, **kw) -> DesiredRegistry:
    """A Docker Hub password registry from the file, unless ``kw`` says otherwise;
    ``secret=None`` leaves it unresolved."""
    values = dict(provider="dockerhub", endpoint="index.docker.io", auth_type="password",
                  username="acme")
    values.update(kw)
    return DesiredRegistry(
        index=index,
        slug=slug,
        secret_ref=SecretRef("password", env_var="HUB_PASSWORD"),
        secret=Secret(secret) if secret is not None else None,
        **values,
    )


def have(slug, **kw) -> RemoteRegistry:
    """The same registry as the API lists it, last updated at T0."""
    values = dict(provider="dockerhub", endpoint="index.docker.io", auth_type="password",
                  username="acme", updated_at=T0)
    values.update(kw)
    return RemoteRegistry(slug=slug, **values)
