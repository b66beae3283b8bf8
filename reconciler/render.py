"""Three views of a Plan: text like Terraform's, markdown for a pull-request comment,
and JSON. Each writes to the stream it is given; none prints, none shows a secret
(a credentials change shows only its description)."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Sequence
from typing import TextIO

from reconciler.model import RemoteRegistry
from reconciler.plan import Change, FieldChange, Plan

GREEN, YELLOW, RED, BOLD, RESET = "\033[32m", "\033[33m", "\033[31m", "\033[1m", "\033[0m"

#: A PR comment holds 65,536 characters; the markdown stays under this.
MARKDOWN_LIMIT = 60_000
BANNER_WIDTH = 78

_HEAD = {
    "create": ("+", "create", GREEN),
    "update": ("~", "update", YELLOW),
    "delete": ("-", "destroy", RED),
}


_CONTROL = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0)])


#: The longest value from the API shown in a table cell or a plan line.
VALUE_LIMIT = 300


def printable(text: str) -> str:
    """``text`` with control and other non-printable characters escaped (bidi
    overrides, line separators), so a value from the API (a username, an endpoint)
    cannot move the cursor, recolour the terminal or reorder what is shown."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) in _CONTROL
                   else ch.encode("unicode_escape").decode("ascii") for ch in text)


def clipped(text: str, limit: int = VALUE_LIMIT) -> str:
    """``printable(text)``, at most ``limit`` characters (ending in "..." when cut)."""
    text = printable(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _value(name: str, value: object) -> str:
    if name == "appIds":  # app IDs or slugs: a tuple, or a list from a saved plan
        if not value:
            return "(all apps)"
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(map(str, value)) + "]"
    if value is None:
        return "(none)"
    if value == "":
        return '""'
    return str(value)


def _field_line(change: Change, f: FieldChange) -> str:
    if f.secret:
        return f"{f.name}: {f.new}"
    if change.action == "create":
        return f"{f.name}: {_value(f.name, f.new)}"
    return f"{f.name}: {_value(f.name, f.old)} -> {_value(f.name, f.new)}"


def _change_lines(change: Change) -> list[tuple[str, str]]:
    """(colour, line) pairs for one change; the colour applies to the first line."""
    symbol, verb, colour = _HEAD[change.action]
    lines = [(colour, f"  {symbol} {verb} {change.slug} ({change.provider})")]
    for reason in change.reasons:
        lines.append(("", f"      # {reason}"))
    for f in change.fields:
        lines.append(("", f"      {_field_line(change, f)}"))
    if change.action == "delete":
        lines.append(("", f"      last used: {change.last_used_at or 'never'}"))
    return lines


def _banner(message: str) -> list[str]:
    lines = textwrap.wrap(printable(f"Warning: {message}"), width=BANNER_WIDTH - 4) or [""]
    rule = "+" + "-" * (BANNER_WIDTH - 2) + "+"
    return [rule, *(f"| {line:<{BANNER_WIDTH - 4}} |" for line in lines), rule]


def _body_lines(plan: Plan) -> list[tuple[str, str]]:
    """Everything between the banners and the summary line, uncoloured text + colour."""
    lines: list[tuple[str, str]] = []
    pending = plan.pending
    if pending:
        lines.append(("", "regsync will perform these actions:"))
        for change in pending:
            lines.append(("", ""))
            lines.extend(_change_lines(change))
        lines.append(("", ""))
    if plan.unmanaged:
        lines.append(("", "Not in the file (unmanaged; settings.prune or --prune deletes them):"))
        for r in plan.unmanaged:
            used = r.last_used_at or "never"
            lines.append(("", f"    {r.slug} ({r.provider}), last used: {used}"))
        lines.append(("", ""))
    if plan.ignored:
        lines.append(("", "Ignored (settings.ignore): " + ", ".join(plan.ignored)))
        lines.append(("", ""))
    return [(colour, clipped(line, 2 * VALUE_LIMIT)) for colour, line in lines]


def render_text(plan: Plan, stream: TextIO, *, color: bool) -> None:
    def paint(colour: str, line: str) -> str:
        return f"{colour}{line}{RESET}" if color and colour else line

    out: list[str] = []
    for warning in plan.warnings:
        out.extend(paint(YELLOW, b) for b in _banner(warning))
        out.append("")
    out.extend(paint(colour, line) for colour, line in _body_lines(plan))
    out.append(paint(BOLD, plan.summary_line()))
    stream.write("\n".join(out) + "\n")


def _fence(lines: list[str]) -> str:
    """A code fence longer than any run of backticks in the body, so no value can end it."""
    count = 3
    for line in lines:
        run = 0
        for ch in line:
            run = run + 1 if ch == "`" else 0
            count = max(count, run + 1)
    return "`" * count


code_fence = _fence  # for the other modules that write markdown


_MD_SYMBOL = {"  +": "+", "  ~": "!", "  -": "-"}  # `!`: GitHub's diff colour for changes
_MAX_FILE_WARNINGS = 50


def _code(text: str) -> str:
    """``text`` as inline code that no backtick in it can end."""
    text = printable(text)[:300]
    if "`" not in text:
        return f"`{text}`"
    longest = max(len(run) for run in re.findall("`+", text))
    fence = "`" * (longest + 1)
    return f"{fence} {text} {fence}"


def _markdown_body(plan: Plan) -> list[str]:
    """The diff block's lines: each change's lines start with its symbol (`+`, `!`, `-`),
    so GitHub colours creates green, updates orange and deletes red."""
    out: list[str] = []
    symbol = ""
    for _, line in _body_lines(plan):
        head = _MD_SYMBOL.get(line[:3])
        if head is not None:
            symbol = head
            out.append(f"{symbol} {line[4:]}")
        elif symbol and line.startswith("      "):
            out.append(symbol + line[1:])
        else:
            symbol = ""
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return out


def render_markdown(plan: Plan, stream: TextIO) -> None:
    """A pull-request comment: the summary line first, the details collapsed.

    A plan made by ``workflow.make_plan`` also names its registries file (shown, and in a
    hidden marker line, so a repository with several files gets one comment per file),
    lists the file's warnings, and ends with the hidden plan-digest markers that
    ``apply --expect-plan`` reads back."""
    from reconciler import digest as plan_digest

    head = [plan_digest.file_marker(plan.source)] if plan.source else []
    where = f" {_code(plan.source)}" if plan.source else ""
    if plan.has_changes:
        head.append(f"**{plan.summary_line()}**{where}")
    else:
        head.append(f"**No changes.** The team's registries match the file.{where}")
    for warning in plan.warnings:
        head += ["", "> [!WARNING]", f"> {printable(warning)}"]
    if plan.file_warnings:
        head += ["", "> [!WARNING]", f"> The registries file{where} has warnings:"]
        for warning in plan.file_warnings[:_MAX_FILE_WARNINGS]:
            head.append(f"> - {printable(warning)[:500]}")
        if len(plan.file_warnings) > _MAX_FILE_WARNINGS:
            head.append(f"> - ... and {len(plan.file_warnings) - _MAX_FILE_WARNINGS} more")
    tail = (
        ["", *plan_digest.digest_markers(plan.digest, [dict(i) for i in plan.digest_items])]
        if plan.digest else []
    )
    body = _markdown_body(plan)
    if not body:
        stream.write("\n".join(head + tail) + "\n")
        return
    fence = _fence(body)
    start = [*head, "", "<details><summary>Details</summary>", "", f"{fence}diff"]
    end = [fence, "", "</details>", *tail]
    body = _cut(body, budget=MARKDOWN_LIMIT - len("\n".join(start + end)) - 2)
    stream.write("\n".join(start + body + end) + "\n")


def _cut(lines: list[str], *, budget: int) -> list[str]:
    """Keep the head and the tail of ``lines`` within ``budget`` characters, saying what was cut."""
    total = sum(len(line) + 1 for line in lines)
    if total <= budget:
        return lines
    budget -= 200  # room for the note
    head: list[str] = []
    used = 0
    for line in lines:
        if used + len(line) + 1 > budget // 2:
            break
        head.append(line)
        used += len(line) + 1
    tail: list[str] = []
    for line in reversed(lines[len(head):]):
        if used + len(line) + 1 > budget:
            break
        tail.append(line)
        used += len(line) + 1
    tail.reverse()
    # whole changes only: end the head and start the tail at a blank line
    while head and head[-1]:
        head.pop()
    while tail and tail[0]:
        tail.pop(0)
    cut = lines[len(head) : len(lines) - len(tail)]
    chars = sum(len(line) + 1 for line in cut)
    changes = sum(1 for line in cut if line.startswith(("+ create ", "! update ", "- destroy ")))
    note = (
        f"... {changes} changes ({len(cut)} lines, {chars} characters) cut here to fit a "
        "pull-request comment; run regsync plan (text, or --format json) to see all of it ..."
    )
    return [*head, note, *tail]


def render_json(plan: Plan, stream: TextIO) -> None:
    stream.write(json.dumps(plan.data, indent=2) + "\n")


def registries_table(remote: Sequence[RemoteRegistry], stream: TextIO) -> None:
    """The team's registries as an aligned table, values escaped like a plan's."""
    header = ("SLUG", "PROVIDER", "ENDPOINT", "AUTH", "USERNAME", "APPS", "LAST USED")
    rows = [
        tuple(clipped(str(v)) for v in (
            r.slug, r.provider, r.endpoint, r.auth_type, r.username,
            ",".join(r.app_ids) or "all", r.last_used_at or "never"))
        for r in sorted(remote, key=lambda r: r.slug)
    ]
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        stream.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")


def registries_json(remote: Sequence[RemoteRegistry], stream: TextIO) -> None:
    rows = [
        {
            "slug": r.slug, "provider": r.provider, "endpoint": r.endpoint,
            "authType": r.auth_type, "username": r.username, "appIds": list(r.app_ids),
            "updatedAt": r.updated_at, "lastUsedAt": r.last_used_at,
        }
        for r in remote
    ]
    stream.write(json.dumps(rows, indent=2) + "\n")


def state_text(data: dict, stream: TextIO) -> None:
    """`regsync state show`: the backend, serial, lineage, lock, then one row a registry."""
    stream.write(f"State: {printable(data['location'])} ({data['backend']})\n")
    if not data["exists"]:
        stream.write("  no state there yet: the first apply writes it\n")
        return
    matches = {True: " (REGSYNC_STATE_KEY matches)", False: " (REGSYNC_STATE_KEY differs)",
               None: ""}[data["key_matches"]]
    stream.write(f"  serial {data['serial']}, lineage {printable(data['lineage'] or '-')}, "
                 f"key check {printable(data['key_check'] or '-')}{matches}\n")
    lock = data["lock"]
    if lock:
        stream.write(f"  locked: lock {printable(lock['id'])} held by {printable(lock['who'])} since "
                     f"{printable(lock['when'])} for `regsync {printable(lock['operation'])}`\n")
    else:
        stream.write("  not locked\n")
    header = ("SLUG", "PROVIDER", "SET BY REGSYNC", "UPDATED AT", "FINGERPRINT")
    rows = [
        tuple(printable(str(v)) for v in (
            r["slug"], r["provider"], r["set_at"] or "-", r["updated_at"] or "-",
            "held" if r["fingerprint"] else "none"))
        for r in data["registries"]
    ]
    stream.write(f"  {len(rows)} registries\n")
    if rows:
        widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
        for row in (header, *rows):
            stream.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")
