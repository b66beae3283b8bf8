"""`--check-credentials`: before anything is saved, ask the Vendor API to pull the first
`tests:` image of each new or changed registry with the credentials from the file.

This is the check the Vendor Portal's **Test** button makes before **Link registry**: the
test call with ``username`` and ``password`` in the body, so the API tries the file's
credentials, not the ones it has saved. ``apply --check-credentials`` runs it first and
changes nothing when one fails, so a wrong password never replaces a working one.
The password goes only into the test call's body; results carry the API's (masked)
error text, never a secret.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from reconciler.errors import PlanError, RegsyncError

if TYPE_CHECKING:
    from reconciler.plan import Change, Plan

CHECKED_ACTIONS = ("create", "update")
NO_IMAGE = "not checked: the registry has no tests: image to pull"
ADVICE = {
    401: "the registry refused the file's credentials: fix the secret before applying",
    403: "the registry refused the file's credentials: fix the secret before applying",
    404: "image or tag not found, or these credentials cannot see it: check the first "
         "tests: image and that the account can pull it",
}


@dataclass(frozen=True)
class CredentialCheck:
    slug: str
    image: str  # "" when not checked
    status: int  # the upstream registry's HTTP status; 0 when the API call failed or none ran
    ok: bool
    error: str = ""
    skipped: bool = False

    @property
    def failed(self) -> bool:
        return not self.ok and not self.skipped

    @property
    def result(self) -> str:
        return "skipped" if self.skipped else "succeeded" if self.ok else "failed"

    def to_data(self) -> dict:
        from reconciler.logs import JSON_LIMIT, clip

        return {"slug": self.slug, "image": self.image or None, "result": self.result,
                "status": self.status, "error": clip(self.error, JSON_LIMIT)}


class CredentialCheckFailed(PlanError):
    """At least one registry's credentials from the file did not pull its image."""


def _check(api, change: Change) -> CredentialCheck:
    desired = change.desired
    if desired is None or not desired.tests:
        return CredentialCheck(change.slug, "", 0, False, NO_IMAGE, skipped=True)
    image = desired.tests[0]
    try:
        result = api.test_registry(image=image, endpoint=desired.endpoint,
                                   username=desired.username, password=desired.secret)
    except RegsyncError as exc:  # e.g. the API refused the call: a failed check
        return CredentialCheck(change.slug, image, 0, False, str(exc))
    if result.ok:
        return CredentialCheck(change.slug, image, result.status, True)
    return CredentialCheck(change.slug, image, result.status, False,
                           result.error or f"upstream status {result.status}")


def check_credentials(plan: Plan, api, *, parallelism: int = 4,
                      on_event: Callable[[CredentialCheck], None] | None = None,
                      ) -> tuple[CredentialCheck, ...]:
    """One check per create and update of ``plan`` (its registries have resolved
    secrets), in plan order; the calls run ``parallelism`` at once."""
    changes = [c for c in plan.pending if c.action in CHECKED_ACTIONS]

    def run(change: Change) -> CredentialCheck:
        check = _check(api, change)
        if on_event is not None:
            on_event(check)
        return check

    if not changes:
        return ()
    with ThreadPoolExecutor(max_workers=max(1, parallelism),
                            thread_name_prefix="regsync-check") as pool:
        return tuple(pool.map(run, changes))


def failure(checks: Sequence[CredentialCheck], consequence: str) -> str | None:
    """The one-line error when a check failed (ending with ``consequence``), else None."""
    failed = [c.slug for c in checks if c.failed]
    if not failed:
        return None
    return f"the credentials in the file failed the check for {', '.join(failed)}{consequence}"


def raise_if_failed(checks: Sequence[CredentialCheck]) -> None:
    message = failure(checks, "; nothing was changed")
    if message:
        raise CredentialCheckFailed(message)


def summary(checks: Sequence[CredentialCheck]) -> str:
    ok = sum(1 for c in checks if c.ok)
    failed = sum(1 for c in checks if c.failed)
    skipped = len(checks) - ok - failed
    return f"Credential checks: {ok} passed, {failed} failed, {skipped} not checked."


def line(check: CredentialCheck) -> str:
    """One line (two with advice) for ``check``, values escaped and clipped."""
    from reconciler.logs import clip

    slug, image = clip(check.slug, 120), clip(check.image, 200)
    if check.skipped:
        return f"check {slug}: {check.error}"
    if check.ok:
        return f"check {slug} {image}: ok (upstream status {check.status})"
    text = f"check {slug} {image}: FAILED"
    text += f" (upstream status {check.status})" if check.status else ""
    text += f": {clip(check.error, 300)}" if check.error else ""
    if check.status in ADVICE:
        text += f"\n    {ADVICE[check.status]}"
    return text


NOTHING_TO_CHECK = "Credential checks: no new or changed registry to check."


def render_text(checks: Sequence[CredentialCheck], stream: TextIO) -> None:
    if not checks:
        stream.write(f"\n{NOTHING_TO_CHECK}\n")
        return
    stream.write("\nCredential checks (the file's credentials, tested by the API; nothing saved):\n")
    for check in checks:
        stream.write("  " + line(check).replace("\n", "\n  ") + "\n")
    stream.write(summary(checks) + "\n")


def render_markdown(checks: Sequence[CredentialCheck], stream: TextIO) -> None:
    if not checks:
        stream.write(f"\n{NOTHING_TO_CHECK}\n")
        return
    stream.write("\n**" + summary(checks) + "**\n\n")
    for check in checks:
        mark = "not checked" if check.skipped else "ok" if check.ok else "**FAILED**"
        text = line(check).split("\n")[0].replace("`", "'")
        stream.write(f"- {mark}: `{text}`\n")


def plan_json(plan: Plan, checks: Sequence[CredentialCheck], stream: TextIO) -> None:
    """The JSON plan with a ``credential_checks`` list."""
    data = dict(plan.data)
    data["credential_checks"] = [c.to_data() for c in checks]
    stream.write(json.dumps(data, indent=2) + "\n")
