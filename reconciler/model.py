"""The value types every module shares: desired registries (from the file) and
remote registries (from the API). Plain frozen data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field

from reconciler.secretvalue import Secret


@dataclass(frozen=True)
class Position:
    """Where something is in a file. 1-based line and column."""

    file: str
    line: int
    col: int


@dataclass(frozen=True)
class SecretRef:
    """Where a credential comes from, before it is resolved.

    ``env_var`` is set for ``${VAR}``; ``encrypted`` for a sops ``ENC[...]`` value.
    """

    field: str  # the YAML field: password | token | secret_access_key | service_account_key
    env_var: str | None = None
    encrypted: bool = False
    position: Position | None = dataclass_field(default=None, compare=False)  # of the value, for errors

    def describe(self) -> str:
        if self.env_var:
            return f"${{{self.env_var}}}"
        return "sops-encrypted value"


@dataclass(frozen=True)
class Settings:
    prune: bool = False
    max_deletes: int = 1
    ignore: tuple[str, ...] = ()
    state: str | None = None  # where the state lives (reconciler.state.location), as written

    def ignores(self, slug: str) -> bool:
        return matches(slug, self.ignore)


def matches(slug: str, patterns) -> bool:
    """Whether ``slug`` matches one of the shell-style globs (``*``, ``?``, ``[abc]``) of
    ``patterns``, case-sensitively: what settings.ignore and --target take."""
    from fnmatch import fnmatchcase

    return any(fnmatchcase(slug, pattern) for pattern in patterns)


@dataclass(frozen=True)
class DesiredRegistry:
    """One entry of `registries:`, already mapped onto the API's terms.

    ``slug`` is resolved (an omitted slug is the endpoint); ``auth_type`` and
    ``username`` are what the API receives (``_json_key`` for a GCP key, the access
    key ID for ECR...). ``secret`` is None until secrets are resolved.
    """

    index: int  # position in `registries:`, 0-based
    provider: str
    slug: str
    endpoint: str
    auth_type: str
    username: str
    secret_ref: SecretRef
    app_ids: tuple[str, ...] | None = None  # None: omitted = every app of the team
    tests: tuple[str, ...] = ()
    # `apps:` (slugs), until workflow resolves them into app_ids; with the position of each
    app_slugs: tuple[str, ...] | None = None
    app_slug_positions: tuple[Position, ...] = dataclass_field(default=(), compare=False)
    skip_validation: bool = False
    position: Position | None = None
    secret: Secret | None = None

    @property
    def label(self) -> str:
        """The breadcrumb used in every message: ``registries[2] (dockerhub "acme")``."""
        return f'registries[{self.index}] ({self.provider} "{self.slug}")'


@dataclass(frozen=True)
class Config:
    path: str
    settings: Settings
    registries: tuple[DesiredRegistry, ...]
    sops: bool = False  # the file is sops-encrypted
    warnings: tuple = ()  # Diagnostics of severity "warning"

    def by_slug(self) -> dict[str, DesiredRegistry]:
        return {r.slug: r for r in self.registries}


@dataclass(frozen=True)
class RemoteRegistry:
    """A registry as the Vendor API returns it (never with a password)."""

    slug: str
    provider: str
    endpoint: str
    auth_type: str
    username: str
    app_ids: tuple[str, ...] = ()
    team_id: str = ""
    created_at: str | None = None
    updated_at: str | None = None
    is_replicated: bool = False
    last_used_at: str | None = None

    @classmethod
    def from_api(cls, d: dict) -> RemoteRegistry:
        return cls(
            slug=d.get("slug") or "",
            provider=d.get("provider") or "",
            endpoint=d.get("endpoint") or "",
            auth_type=d.get("authType") or "",
            username=d.get("username") or "",
            app_ids=tuple(d.get("appIds") or ()),
            team_id=d.get("teamId") or "",
            created_at=d.get("createdAt"),
            updated_at=d.get("updatedAt"),
            is_replicated=bool(d.get("isReplicated")),
            last_used_at=d.get("lastUsedAt"),
        )


@dataclass(frozen=True)
class TeamApp:
    """An application of the team, as ``GET /v3/apps`` lists it."""

    id: str
    slug: str
    name: str = ""


@dataclass(frozen=True)
class RegistryWrite:
    """The body of a create or update call. ``password`` is revealed only on the wire.

    For an update, fields left None are omitted from the body (the API keeps them);
    ``app_ids=()`` sends ``[]`` (shared with every app again).
    """

    provider: str | None = None
    endpoint: str | None = None
    slug: str | None = None  # create only; the slug cannot change
    auth_type: str | None = None
    username: str | None = None
    password: Secret | None = None
    app_ids: tuple[str, ...] | None = None
    skip_validation: bool | None = None

    def to_body(self, *, create: bool) -> dict:
        body: dict = {}
        for key, value in (
            ("provider", self.provider),
            ("endpoint", self.endpoint),
            ("authType", self.auth_type),
            ("username", self.username),
        ):
            if value is not None:
                body[key] = value
        if create and self.slug is not None:
            body["slug"] = self.slug
        if self.password is not None:
            body["password"] = self.password.reveal()
        if self.app_ids is not None:
            body["appIds"] = list(self.app_ids)
        if self.skip_validation is not None:
            body["skipValidation"] = self.skip_validation
        return body


@dataclass(frozen=True)
class PullTestResult:
    """The answer of the API's test call: the upstream registry's status."""

    status: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class RegistryLog:
    action: str = ""
    created_at: str | None = None
    customer_name: str = ""
    endpoint: str = ""
    image: str = ""
    is_success: bool = False
    slug: str = ""
    status_code: int = 0
    tag: str = ""
    extra: dict = dataclass_field(default_factory=dict)

    @classmethod
    def from_api(cls, d: dict) -> RegistryLog:
        return cls(
            action=d.get("action") or "",
            created_at=d.get("createdAt"),
            customer_name=d.get("customerName") or "",
            endpoint=d.get("endpoint") or "",
            image=d.get("image") or "",
            is_success=bool(d.get("isSuccess")),
            slug=d.get("slug") or "",
            status_code=int(d.get("statusCode") or 0),
            tag=d.get("tag") or "",
        )
