"""`apply --report FILE --report-format markdown`: the apply result as markdown, for a CI
job summary (``$GITHUB_STEP_SUMMARY``) or a merge-request note. Holds no secret: only
slugs, actions, results and the errors' texts (which never hold one)."""

from __future__ import annotations

from reconciler.apply import ApplyResult
from reconciler.render import printable

_MARK = {"succeeded": "✅ succeeded", "failed": "❌ failed", "skipped": "⏭️ skipped"}
_MAX_ROWS = 500  # a job summary holds 1 MiB; far more rows than a review can read


def _cell(text: object) -> str:
    """A table cell showing ``text`` as it is: escaped, so that neither HTML nor a
    markdown link or image in a message from elsewhere is rendered."""
    text = printable(str(text)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("](", "]\\(")[:300]


def summary_line(result: ApplyResult) -> str:
    """The apply's last line: `Apply failed: ...` when a change or an image test failed."""
    c = result.counts
    done = (
        f"{c['added']} added, {c['changed']} changed, {c['destroyed']} destroyed; "
        f"tests: {c['tests_passed']} passed, {c['tests_failed']} failed."
    )
    failures = []
    if c["failed"]:
        failures.append(f"{c['failed']} of {len(result.changes)} changes failed")
    if c["tests_failed"]:
        failures.append(f"{c['tests_failed']} of {len(result.tests)} image tests failed")
    if failures:
        return f"Apply failed: {', '.join(failures)}; {done}"
    return f"Apply complete: {done}"


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows[:_MAX_ROWS]:
        out.append("| " + " | ".join(_cell(v) for v in row) + " |")
    if len(rows) > _MAX_ROWS:
        out.append(f"\n... and {len(rows) - _MAX_ROWS} more (see `--report` in JSON)")
    return out


def apply_markdown(result: ApplyResult) -> str:
    lines = ["### regsync apply", "", f"**{summary_line(result)}**"]
    if result.changes:
        rows: list[tuple] = [  # a table's rows (the tests' below have one more column)
            (o.change.slug, o.change.action, _MARK[o.status], o.error)
            for o in result.changes
        ]
        lines += ["", *_table(("Registry", "Action", "Result", "Detail"), rows)]
    else:
        lines += ["", "No changes were needed."]
    if result.tests:
        rows = [
            (t.slug, t.image, _MARK[t.result], t.status if not t.skipped else "",
             " ".join(x for x in (t.error, t.advice) if x))
            for t in result.tests
        ]
        lines += ["", "Image tests:", "", *_table(("Registry", "Image", "Result", "Upstream status", "Detail"), rows)]
    return "\n".join(lines) + "\n"
