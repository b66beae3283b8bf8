"""The plan: a value saying what apply will do, built by ``reconciler.diff.diff``.

Changes are sorted in apply order (creates, updates, then deletes, each by slug),
with the registries that already match last. ``Plan.data`` is the JSON shape shared by
``--format json`` and saved plan files; it never holds a secret or a fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.errors import PlanError
from reconciler.model import DesiredRegistry, RegistryWrite, RemoteRegistry

PLAN_FORMAT_VERSION = 1
ACTIONS = ("create", "update", "delete", "noop")  # apply order: create, update, then delete

#: The descriptions a credentials FieldChange shows instead of a value.
CREDENTIALS_SET = "(will be set)"
CREDENTIALS_CHANGED = "(changed)"
CREDENTIALS_RESET = "(re-set: changed outside regsync)"


@dataclass(frozen=True)
class FieldChange:
    name: str  # "endpoint", "provider", "authType", "username", "appIds", "credentials"
    old: object  # shown as is; for credentials None
    new: object  # for credentials one of the descriptions above, NEVER a secret
    secret: bool = False


@dataclass(frozen=True)
class Change:
    action: str
    slug: str
    provider: str
    fields: tuple[FieldChange, ...] = ()
    reasons: tuple[str, ...] = ()
    last_used_at: str | None = None  # deletes: from the API
    desired: DesiredRegistry | None = None  # create/update/noop (holds the Secret)
    remote: RemoteRegistry | None = None  # update/delete/noop

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}")

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def write_body(self) -> RegistryWrite:
        """The body of the create or update call this change makes."""
        d = self.desired
        if self.action == "create" and d is not None:
            return RegistryWrite(
                provider=d.provider,
                endpoint=d.endpoint,
                slug=d.slug,
                auth_type=d.auth_type,
                username=d.username,
                password=d.secret,
                app_ids=d.app_ids,
                skip_validation=d.skip_validation,
            )
        if self.action != "update" or d is None:
            raise ValueError(f"a {self.action} of {self.slug!r} has no write body")
        names = set(self.field_names)
        if d.app_ids is not None:
            app_ids = tuple(sorted(set(d.app_ids)))
        elif self.remote is not None and self.remote.app_ids:
            app_ids = ()  # the file omits app_ids: shared with every app again
        else:
            app_ids = None
        return RegistryWrite(
            provider=d.provider if "provider" in names else None,
            endpoint=d.endpoint if "endpoint" in names else None,
            auth_type=d.auth_type if "authType" in names else None,
            username=d.username if "username" in names else None,
            # a saved password only goes to the endpoint it was saved for: send it again
            password=d.secret if names & {"credentials", "endpoint"} else None,
            app_ids=app_ids,
            skip_validation=d.skip_validation,
        )

    def to_data(self) -> dict:
        data: dict = {
            "action": self.action,
            "slug": self.slug,
            "provider": self.provider,
            "fields": list(self.field_names),
            "reasons": list(self.reasons),
        }
        data["changed"] = [_field_data(f) for f in self.fields]
        if self.action == "delete":
            data["last_used_at"] = self.last_used_at
        return data


def _field_data(f: FieldChange) -> dict:
    """A field's old and new values; for credentials only the description, never a value."""
    if f.secret:
        return {"field": f.name, "new": f.new}
    def plain(value):
        return list(value) if isinstance(value, tuple) else value
    return {"field": f.name, "old": plain(f.old), "new": plain(f.new)}


def _order(change: Change) -> tuple[int, str]:
    return ACTIONS.index(change.action), change.slug


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    unmanaged: tuple[RemoteRegistry, ...] = ()
    ignored: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    max_deletes: int = 1
    #: set by ``reconciler.workflow.make_plan``: the registries file (as given), its
    #: warnings (as ``validate`` prints them), and the plan digest (``reconciler.digest``)
    source: str = ""
    file_warnings: tuple[str, ...] = ()
    digest: str = ""
    digest_items: tuple = ()  # dicts: action, slug, the change's own short digest

    def __post_init__(self):
        object.__setattr__(self, "changes", tuple(sorted(self.changes, key=_order)))
        object.__setattr__(
            self, "unmanaged", tuple(sorted(self.unmanaged, key=lambda r: r.slug))
        )
        object.__setattr__(self, "ignored", tuple(sorted(self.ignored)))

    @property
    def summary(self) -> dict:
        counts = {"create": 0, "update": 0, "delete": 0}
        for change in self.changes:
            if change.action in counts:
                counts[change.action] += 1
        return counts

    @property
    def has_changes(self) -> bool:
        return any(c.action != "noop" for c in self.changes)

    @property
    def pending(self) -> tuple[Change, ...]:
        """The changes apply makes (everything but the noops), in apply order."""
        return tuple(c for c in self.changes if c.action != "noop")

    @property
    def too_many_deletes(self) -> bool:
        return self.summary["delete"] > self.max_deletes

    @property
    def data(self) -> dict:
        return {
            "format_version": PLAN_FORMAT_VERSION,
            "changes": [c.to_data() for c in self.changes],
            "summary": self.summary,
            "unmanaged": [r.slug for r in self.unmanaged],
            "ignored": list(self.ignored),
            "warnings": list(self.warnings),
            "file": self.source,
            "file_warnings": list(self.file_warnings),
            "digest": self.digest,
            "digest_items": [dict(i) for i in self.digest_items],
        }

    def summary_line(self) -> str:
        if not self.has_changes:
            return "No changes. The team's registries match the file."
        s = self.summary
        return f"Plan: {s['create']} to add, {s['update']} to change, {s['delete']} to destroy."

    def raise_if_unsafe(self, *, force: bool) -> None:
        if self.too_many_deletes and not force:
            n = self.summary["delete"]
            raise PlanError(
                f"the plan deletes {n} {'registry' if n == 1 else 'registries'}, "
                f"more than settings.max_deletes "
                f"({self.max_deletes}); review it, then apply with --force"
            )
