"""The effects of `regsync apply`: run a Plan through the Vendor API, then the image tests.

Creates and updates run first, in a bounded thread pool; deletes start only once every
create and update has finished, and not at all when a create failed, so a failure
part-way never leaves the team with fewer registries than before (a renamed registry is
a create plus a delete: its old entry stays until the new one exists). Any other
failure does not stop the rest. Each success is recorded in the state as it happens (a
local file's journal has it on disk at once; a shared state is pushed every few
seconds), so the next plan shows only what is left.

Errors are reported per change as text: the str of a RegsyncError, which never holds
a secret; anything else only by its type name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from reconciler.errors import APINotFound, RegsyncError
from reconciler.model import Config, RemoteRegistry

if TYPE_CHECKING:  # imported lazily: plan/state are not needed to import this module
    from reconciler.api import VendorAPI
    from reconciler.plan import Change, Plan
    from reconciler.state import Fingerprinter, State

DEFAULT_PARALLELISM = 4
REPORT_FORMAT_VERSION = 1

ADVICE_NOT_FOUND = (
    "image or tag not found, or these credentials cannot see it: "
    "check the name and tag, and that the account can pull it"
)
ADVICE_REFUSED = (
    "credentials refused: the registry rejected the saved username/password; "
    "rotate the secret and apply again"
)


@dataclass(frozen=True)
class ChangeOutcome:
    change: Change
    status: str  # "succeeded" | "failed" | "skipped"
    error: str = ""
    remote: RemoteRegistry | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True)
class ImageTestOutcome:
    slug: str
    image: str
    status: int  # the upstream registry's HTTP status; 0 when the API call itself failed
    ok: bool
    error: str = ""
    advice: str = ""
    skipped: bool = False  # not run (e.g. the registry's change failed, or --skip-tests)

    @property
    def result(self) -> str:
        if self.skipped:
            return "skipped"
        return "succeeded" if self.ok else "failed"


@dataclass(frozen=True)
class ApplyResult:
    changes: tuple[ChangeOutcome, ...] = ()
    tests: tuple[ImageTestOutcome, ...] = ()

    @property
    def ok(self) -> bool:
        """Every change succeeded and no test failed (a skipped test is not a failure)."""
        return all(o.ok for o in self.changes) and all(t.ok or t.skipped for t in self.tests)

    @property
    def counts(self) -> dict:
        done = [o.change.action for o in self.changes if o.ok]
        return {
            "added": done.count("create"),
            "changed": done.count("update"),
            "destroyed": done.count("delete"),
            "failed": sum(o.status == "failed" for o in self.changes),
            "skipped": sum(o.status == "skipped" for o in self.changes),
            "tests_passed": sum(t.result == "succeeded" for t in self.tests),
            "tests_failed": sum(t.result == "failed" for t in self.tests),
            "tests_skipped": sum(t.skipped for t in self.tests),
        }

    def report_data(self) -> dict:
        """The JSON document of `apply --report FILE`. Holds no secret."""
        changes = []
        for o in self.changes:
            item: dict[str, object] = {
                "action": o.change.action,
                "slug": o.change.slug,
                "provider": o.change.provider,
                "fields": [f.name for f in o.change.fields],
                "result": o.status,
            }
            if o.error:
                item["reason"] = o.error
            if o.remote is not None and o.remote.updated_at:
                item["updated_at"] = o.remote.updated_at
            changes.append(item)
        tests = []
        for t in self.tests:
            item = {"slug": t.slug, "image": t.image, "result": t.result}
            if not t.skipped:
                item["upstream_status"] = t.status
            if t.error:
                item["reason"] = t.error
            if t.advice:
                item["advice"] = t.advice
            tests.append(item)
        return {
            "format_version": REPORT_FORMAT_VERSION,
            "ok": self.ok,
            "summary": self.counts,
            "changes": changes,
            "tests": tests,
        }


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, RegsyncError):
        return str(exc)
    return f"internal error ({type(exc).__name__}); please report it"


class _Recorder:
    """Turns each success into its state record and hands it to the state's writer
    (``reconciler.state.store``): a local file has it on disk, in an append-only
    journal, before ``record`` returns; a shared state pushes it within seconds."""

    def __init__(self, writer, fingerprinter: Fingerprinter):
        self.writer = writer
        self.state = writer.state
        self.fingerprinter = fingerprinter

    def record(self, change: Change, remote: RemoteRegistry | None) -> None:
        from datetime import UTC, datetime

        from reconciler.state import RegistryState

        if change.action == "delete":
            self.writer.add(change.slug, None)
            return
        desired = change.desired
        assert desired is not None  # a create or an update carries the registry it writes
        old = self.state.registries.get(change.slug)
        # the fingerprint covers the username and auth type with the secret
        sets_credentials = change.action == "create" or any(
            f.name in ("credentials", "username", "authType") for f in change.fields
        )
        fingerprint: str | None
        if sets_credentials:
            fingerprint = self.fingerprinter.fingerprint(desired)
        else:
            fingerprint = old.fingerprint if old else None
        self.writer.add(change.slug, RegistryState(
            provider=desired.provider,
            endpoint=desired.endpoint,
            fingerprint=fingerprint,
            updated_at=remote.updated_at if remote else None,
            team_id=(remote.team_id or None) if remote else None,
            set_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        ))


def _run_change(change: Change, api: VendorAPI, recorder: _Recorder) -> ChangeOutcome:
    remote = None
    try:
        if change.action == "create":
            remote = api.create_registry(change.write_body())
        elif change.action == "update":
            remote = api.update_registry(change.slug, change.write_body())
        elif change.action == "delete":
            try:
                api.delete_registry(change.slug)
            except APINotFound:
                pass  # already gone: what the plan asked for
        else:
            raise ValueError(f"cannot apply a {change.action!r} change")
    except Exception as exc:  # noqa: BLE001 - one failure must not stop the others
        return ChangeOutcome(change, "failed", _error_text(exc))
    try:
        recorder.record(change, remote)
    except Exception as exc:  # noqa: BLE001
        return ChangeOutcome(
            change,
            "failed",
            f"applied, but the state file could not be saved: {_error_text(exc)}",
            remote,
        )
    return ChangeOutcome(change, "succeeded", "", remote)


_Outcome = TypeVar("_Outcome")


def _finished(outcomes: Sequence[_Outcome | None]) -> tuple[_Outcome, ...]:
    """``outcomes`` once ``_run_all`` has returned: it called ``done`` for every item."""
    done = tuple(o for o in outcomes if o is not None)
    assert len(done) == len(outcomes)
    return done


def _run_all(pool: ThreadPoolExecutor, fn, items, done: Callable) -> None:
    """``fn(item)`` for each item in the pool; ``done(item, result)`` as each finishes,
    on the calling thread, so that whoever reports them has one writer."""
    futures = {pool.submit(fn, item): item for item in items}
    for future in as_completed(futures):
        done(futures[future], future.result())


def apply_plan(
    plan: Plan,
    api: VendorAPI,
    *,
    state: State,
    state_path=None,
    fingerprinter: Fingerprinter,
    parallelism: int = DEFAULT_PARALLELISM,
    on_event: Callable[[ChangeOutcome], None] | None = None,
    writer=None,
) -> tuple[ChangeOutcome, ...]:
    """Apply every create/update/delete of ``plan``; return one outcome per change, in
    plan order. The caller holds the state's lock. Each success is recorded through
    ``writer`` (``StateStore.writer``; the caller closes it), or, without one, in the
    local state file ``state_path``. ``on_event`` is called once per finished (or
    skipped) change, on the calling thread."""
    if parallelism < 1:
        raise ValueError("parallelism must be at least 1")
    own_writer = writer is None
    if own_writer:
        from reconciler.state.location import Location
        from reconciler.state.store import StateStore

        store = StateStore(Location("file", str(state_path)))
        writer = store.writer(state, key_id=fingerprinter.key_id,
                              compact_first=os.path.exists(store.backend.journal_path))
    try:
        return _apply_changes(plan, api, _Recorder(writer, fingerprinter), parallelism, on_event)
    finally:
        if own_writer:
            writer.close()


def _apply_changes(plan, api, recorder, parallelism, on_event) -> tuple[ChangeOutcome, ...]:
    ordered = [c for c in plan.changes if c.action in ("create", "update")]
    n_first = len(ordered)
    ordered += [c for c in plan.changes if c.action == "delete"]
    outcomes: list[ChangeOutcome | None] = [None] * len(ordered)

    def finish(i: int, outcome: ChangeOutcome) -> None:
        outcomes[i] = outcome
        if on_event is not None:
            on_event(outcome)

    def run(i: int) -> ChangeOutcome:
        return _run_change(ordered[i], api, recorder)

    pool = ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="regsync-apply")
    try:
        _run_all(pool, run, range(n_first), finish)
        failed_creates = [
            o.change.slug for o in _finished(outcomes[:n_first]) if o.change.action == "create" and not o.ok
        ]
        if failed_creates:
            reason = (
                f"not deleted because {len(failed_creates)} create(s) failed "
                f"({', '.join(failed_creates)}): deletes wait until every create "
                "succeeds, so the team never ends up with fewer registries; "
                "fix the failure and apply again"
            )
            for i in range(n_first, len(ordered)):
                finish(i, ChangeOutcome(ordered[i], "skipped", reason))
        else:
            _run_all(pool, run, range(n_first, len(ordered)), finish)
    except BaseException:
        # Ctrl-C (or a failing on_event): start nothing more; the calls already in
        # flight finish and are recorded, so the state stays true.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return _finished(outcomes)


# ---------------------------------------------------------------------------------
# image tests


def _advice(status: int) -> str:
    if status == 404:
        return ADVICE_NOT_FOUND
    if status in (401, 403):
        return ADVICE_REFUSED
    return ""


def _run_test(api: VendorAPI, slug: str, endpoint: str, image: str) -> ImageTestOutcome:
    try:
        result = api.test_registry(slug=slug, endpoint=endpoint, image=image)
    except Exception as exc:  # noqa: BLE001 - one failure must not stop the others
        return ImageTestOutcome(slug, image, 0, False, error=_error_text(exc))
    if result.ok:
        return ImageTestOutcome(slug, image, result.status, True)
    return ImageTestOutcome(
        slug, image, result.status, False, error=result.error, advice=_advice(result.status)
    )


def run_image_tests(
    config: Config,
    api: VendorAPI,
    *,
    parallelism: int = DEFAULT_PARALLELISM,
    slugs: Collection[str] | None = None,
    skip: Mapping[str, str] | None = None,
    on_event: Callable[[ImageTestOutcome], None] | None = None,
) -> tuple[ImageTestOutcome, ...]:
    """Ask the API to pull each `tests:` image of each registry (only ``slugs`` when
    given), in parallel. ``skip`` maps a slug to the reason its tests are not run
    (e.g. its create failed): those come back as skipped. Outcomes in file order;
    ``on_event`` is called as each finishes, on the calling thread."""
    if parallelism < 1:
        raise ValueError("parallelism must be at least 1")
    skip = skip or {}
    jobs = [
        (reg, image)
        for reg in config.registries
        if slugs is None or reg.slug in slugs
        for image in reg.tests
    ]

    def run(i: int) -> ImageTestOutcome:
        reg, image = jobs[i]
        if reg.slug in skip:
            return ImageTestOutcome(reg.slug, image, 0, False, error=skip[reg.slug], skipped=True)
        return _run_test(api, reg.slug, reg.endpoint, image)

    outcomes: list[ImageTestOutcome | None] = [None] * len(jobs)

    def finish(i: int, outcome: ImageTestOutcome) -> None:
        outcomes[i] = outcome
        if on_event is not None:
            on_event(outcome)

    if not jobs:
        return ()
    with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="regsync-test") as pool:
        _run_all(pool, run, range(len(jobs)), finish)
    return _finished(outcomes)


def skipped_tests(
    config: Config, *, reason: str, slugs: Collection[str] | None = None
) -> tuple[ImageTestOutcome, ...]:
    """The tests that `--skip-tests` leaves out, for the report."""
    return tuple(
        ImageTestOutcome(reg.slug, image, 0, False, error=reason, skipped=True)
        for reg in config.registries
        if slugs is None or reg.slug in slugs
        for image in reg.tests
    )


def untestable(outcomes: Sequence[ChangeOutcome]) -> dict[str, str]:
    """Slugs whose create failed (nothing to test), with the reason: for ``skip=``."""
    return {
        o.change.slug: f"not tested: its create failed ({o.error})"
        for o in outcomes
        if o.change.action == "create" and not o.ok
    }


__all__ = [
    "ADVICE_NOT_FOUND",
    "ADVICE_REFUSED",
    "ApplyResult",
    "ChangeOutcome",
    "ImageTestOutcome",
    "apply_plan",
    "run_image_tests",
    "skipped_tests",
    "untestable",
]
