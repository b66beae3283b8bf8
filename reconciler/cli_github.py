"""`regsync github ...`: the steps regsync's GitHub Action runs (reconciler/github.py).

They read the repository and token from the environment a workflow has: GITHUB_TOKEN,
GITHUB_REPOSITORY, GITHUB_API_URL (default https://api.github.com). Thin: options,
one call, one line on stderr, an exit code.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from reconciler.errors import RegsyncError

app = typer.Typer(
    name="github",
    help="Steps of regsync's GitHub Action: the plan comment, the reviewed plan, the health issue.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

AuthorOpt = Annotated[
    str | None,
    typer.Option("--author", help="Only comments and issues by this login (e.g. github-actions[bot]).",
                 show_default=False),
]


class Health(str, Enum):
    failed = "failed"
    healthy = "healthy"


def _client():
    from reconciler.github import DEFAULT_API_URL, GitHub

    env = os.environ
    return GitHub(
        token=env.get("GITHUB_TOKEN", "").strip(),
        repository=env.get("GITHUB_REPOSITORY", "").strip(),
        api_url=env.get("GITHUB_API_URL", "").strip() or DEFAULT_API_URL,
    )


def _read(path: Path, what: str) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read(4 * 1024 * 1024 + 1)
    except OSError as exc:
        raise RegsyncError(f"{path}: cannot read the {what}: {exc.strerror}") from exc
    if len(raw) > 4 * 1024 * 1024:
        raise RegsyncError(f"{path}: the {what} is larger than 4 MiB")
    return raw.decode("utf-8", "replace")


@app.command()
def comment(
    pr: Annotated[int, typer.Option("--pr", min=1, help="The pull request's number.")],
    body_file: Annotated[Path, typer.Option("--body-file", help="The markdown plan (regsync plan --format markdown).")],
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="The registries file, when the body does not name it "
                     "(e.g. a message that plan failed).", show_default=False),
    ] = None,
    author: AuthorOpt = None,
) -> int:
    """Create the pull request's plan comment for this registries file, or update it in place."""
    from reconciler.digest import FILE_MARKER, file_marker

    body = _read(body_file, "markdown plan")
    first = body.split("\n", 1)[0]
    if config is not None and first != file_marker(str(config)):
        first = file_marker(str(config))
        body = f"{first}\n{body}"
    if not first.startswith(f"<!-- {FILE_MARKER}: "):
        raise RegsyncError(f"{body_file}: not a markdown plan made by regsync plan (no {FILE_MARKER} marker)")
    with _client() as gh:
        outcome = gh.upsert_comment(pr, body, marker=first, author=author)
    print(f"{outcome.action} the plan comment {outcome.url or outcome.number}", file=sys.stderr)
    return 0


@app.command("reviewed-plan")
def reviewed_plan(
    commit: Annotated[str, typer.Option("--commit", help="The pushed commit (github.sha).")],
    config: Annotated[
        Path, typer.Option("--config", "-c", help="The registries file, as given to plan.")
    ] = Path("registries.yaml"),
    out: Annotated[Path, typer.Option("--out", help="Write the plan comment's body here.")] = Path("reviewed-plan.md"),
    author: AuthorOpt = None,
) -> int:
    """Save the plan comment of the pull request a commit came from, for apply --expect-plan."""
    from reconciler.github import plan_marker

    with _client() as gh:
        found = gh.reviewed_plan(commit, plan_marker(str(config)), author=author)
    if found is None:
        raise RegsyncError(
            f"no reviewed plan for {config}: commit {commit[:12]} came from no merged pull request "
            "with a regsync plan comment for that file"
        )
    number, body = found
    try:
        out.write_text(body)
    except OSError as exc:
        raise RegsyncError(f"cannot write {out}: {exc.strerror}") from exc
    print(f"the reviewed plan is the comment on pull request #{number}; saved to {out}", file=sys.stderr)
    return 0


@app.command("health-issue")
def health_issue(
    status: Annotated[Health, typer.Option("--status", help="failed: open or update the issue; healthy: close it.")],
    key: Annotated[
        str, typer.Option("--key", help="Which check this is (e.g. the registries file).")
    ] = "registries.yaml",
    report_file: Annotated[
        Path | None, typer.Option("--report-file", help="The check's output, shown in the issue.", show_default=False)
    ] = None,
    title: Annotated[
        str, typer.Option("--title", help="The issue's title when one is opened.")
    ] = "regsync: registry health check failed",
    run_url: Annotated[str, typer.Option("--run-url", help="A link to the workflow run.")] = "",
    author: AuthorOpt = None,
) -> int:
    """Open one issue when the nightly check fails, update it while it fails, close it when healthy."""
    from reconciler.render import code_fence, printable

    report = ""
    if report_file is not None:
        text = _read(report_file, "report")
        lines = [printable(line) for line in text.splitlines()]
        fence = code_fence(lines)
        report = "\n".join([f"regsync's check of `{printable(key)}` failed:", "", f"{fence}text", *lines, fence])
    with _client() as gh:
        outcome = gh.health_issue(healthy=status is Health.healthy, key=key, title=title,
                                  report=report or "regsync's check failed.", run_url=run_url, author=author)
    if outcome.action == "none":
        print("healthy; no open health issue", file=sys.stderr)
    else:
        print(f"{outcome.action} the health issue #{outcome.number}", file=sys.stderr)
    return 0
