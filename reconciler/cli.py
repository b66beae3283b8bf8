"""The command line: parse options, call the core, render, choose the exit code.

The only module that prints, prompts or exits. Heavy modules (httpx) are
imported inside the commands that need them, so `validate` and `--help` stay fast.

Exit codes: 0 success; 1 any error, usage errors included; 2 `plan
--detailed-exitcode` with changes; 3 an internal error (a bug); 130 interrupted.
"""

from __future__ import annotations

import os
import sys
import threading
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

import typer

from reconciler import __version__
from reconciler.errors import ConfigError, RegsyncError, escaped

EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class AppSettings(TypedDict):
    """The keywords every regsync Typer app is made with (``typer.Typer(**settings)``)."""

    name: str
    help: str
    no_args_is_help: bool
    add_completion: bool
    pretty_exceptions_enable: bool
    rich_markup_mode: Literal["markdown", "rich"] | None
    context_settings: dict[str, Any]


_APP_SETTINGS = AppSettings(
    name="regsync",
    help="Keep a Replicated team's external registries exactly as a YAML file says.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app = typer.Typer(**_APP_SETTINGS)


class PlanFormat(str, Enum):
    text = "text"
    markdown = "markdown"
    json = "json"


class ReportFormat(str, Enum):
    json = "json"
    markdown = "markdown"


class ListFormat(str, Enum):
    table = "table"
    json = "json"


ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="The registries file.", show_default=True)
]
StateOpt = Annotated[
    str | None,
    typer.Option(
        help="Where the state lives: PATH, s3://BUCKET/KEY or git:BRANCH. "
        "[default: $REGSYNC_STATE, settings.state, else regsync.state.json beside the registries file]",
        show_default=False,
    ),
]
LockTimeoutOpt = Annotated[
    str,
    typer.Option("--lock-timeout", help="How long to wait for the state's lock (30s, 2m)."),
]
RekeyOpt = Annotated[
    bool,
    typer.Option("--rekey", help="Accept a new REGSYNC_STATE_KEY: every credential is set again once."),
]
ReplaceOpt = Annotated[
    list[str] | None,
    typer.Option("--replace", help="Set this registry's credentials again even if unchanged (repeatable).",
                 show_default=False),
]


def _duration(text: str) -> float:
    from reconciler.state.lock import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--lock-timeout") from None


TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--api-token",
        help="Vendor API token. [default: $REPLICATED_API_TOKEN]",
        show_default=False,
    ),
]
OriginOpt = Annotated[
    str | None,
    typer.Option(
        "--api-origin",
        help="Vendor API origin. [default: $REPLICATED_API_ORIGIN or https://api.replicated.com/vendor]",
        show_default=False,
    ),
]
TargetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        help="Plan only the registries whose slug matches; globs as in settings.ignore (repeatable).",
        show_default=False,
    ),
]
PruneOpt = Annotated[
    bool, typer.Option("--prune", help="Delete team registries the file does not list.")
]
CheckCredentialsOpt = Annotated[
    bool,
    typer.Option(
        "--check-credentials",
        help="First have the API pull each new or changed registry's first tests: image "
        "with the file's credentials.",
    ),
]


def _err(message: str) -> None:
    print(message, file=sys.stderr)


#: A file's problems are listed up to this many; past it, how many more there are.
LISTED = 300


def _listing(diagnostics, stream) -> None:
    for diagnostic in diagnostics[:LISTED]:
        print(diagnostic, file=stream)
    if len(diagnostics) > LISTED:
        print(f"... and {len(diagnostics) - LISTED} more not listed", file=stream)


_OUT = threading.Lock()


def _say(text: str) -> None:
    """Write whole lines to stdout, one writer at a time: apply's and test's workers
    report from several threads, and their lines must not run into each other."""
    with _OUT:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def _use_color(stream) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR")


def _print_warnings(config) -> None:
    for warning in config.warnings:
        _err(str(warning))


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True)
    ] = False,
) -> None:
    if version:
        print(f"regsync {__version__}")
        raise typer.Exit(0)


@app.command()
def validate(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Registries files. [default: registries.yaml]")
    ] = None,
    check_env: Annotated[
        bool, typer.Option("--check-env", help="Also report ${VAR}s that are not set.")
    ] = False,
) -> int:
    """Check registries files offline: schema, duplicates, secrets, image references."""
    from reconciler.config import check_files

    paths = [str(f) for f in files] if files else ["registries.yaml"]
    diagnostics = check_files(paths, check_env=check_env, env=os.environ)
    _listing(diagnostics, sys.stdout)
    errors = sum(1 for d in diagnostics if d.severity == "error")
    warnings = len(diagnostics) - errors
    noun = "file" if len(paths) == 1 else "files"
    if errors:
        _err(f"{errors} error(s), {warnings} warning(s) in {len(paths)} {noun}")
        return EXIT_ERROR
    _err(f"{len(paths)} {noun} valid" + (f", {warnings} warning(s)" if warnings else ""))
    return EXIT_OK


def _render_plan(plan, fmt: PlanFormat, stream) -> None:
    from reconciler import render

    if fmt is PlanFormat.json:
        render.render_json(plan, stream)
    elif fmt is PlanFormat.markdown:
        render.render_markdown(plan, stream)
    else:
        render.render_text(plan, stream, color=_use_color(stream))
        if plan.digest and plan.has_changes:  # "No changes." stays the one line it is
            stream.write(f"Plan digest: {plan.digest}\n")


@app.command()
def plan(
    config: ConfigOpt = Path("registries.yaml"),
    state: StateOpt = None,
    fmt: Annotated[PlanFormat, typer.Option("--format", help="Output format.")] = PlanFormat.text,
    out: Annotated[
        Path | None, typer.Option("--out", help="Save the plan for `regsync apply PLANFILE`.")
    ] = None,
    detailed_exitcode: Annotated[
        bool,
        typer.Option("--detailed-exitcode", help="Exit 0 when no changes, 2 when changes, 1 on error."),
    ] = False,
    target: TargetOpt = None,
    prune: PruneOpt = False,
    check_credentials: CheckCredentialsOpt = False,
    rekey: RekeyOpt = False,
    replace: ReplaceOpt = None,
    api_token: TokenOpt = None,
    api_origin: OriginOpt = None,
) -> int:
    """Show what apply would change, without changing anything."""
    from reconciler import workflow

    session = workflow.run_plan(
        config, env=os.environ, token=api_token, origin=api_origin, state_path=state,
        prune=prune, targets=target or (), check_credentials=check_credentials,
        rekey=rekey, replace=replace or (),
    )
    _print_warnings(session.config)
    checks = session.checks  # None without --check-credentials
    if checks is not None and fmt is PlanFormat.json:
        from reconciler.credcheck import plan_json

        plan_json(session.plan, checks, sys.stdout)
    else:
        _render_plan(session.plan, fmt, sys.stdout)
        if checks is not None:
            _render_checks(checks, fmt, sys.stdout)
    if checks:
        from reconciler.credcheck import failure

        message = failure(checks, "; the plan was not saved" if out else "")
        if message:
            _err(f"error: {message}")
            return EXIT_ERROR
    if out:
        workflow.save_session_plan(session, out)
        _err(f"Saved the plan to {out}. Apply it with: regsync apply {out}")
    if detailed_exitcode and session.plan.has_changes:
        return EXIT_CHANGES
    return EXIT_OK


def _render_checks(checks, fmt: PlanFormat, stream) -> None:
    from reconciler import credcheck

    if fmt is PlanFormat.markdown:
        credcheck.render_markdown(checks, stream)
    else:
        credcheck.render_text(checks, stream)
    stream.flush()


def _confirm(plan) -> bool:
    print("\nDo you want to apply these changes? Only 'yes' will be accepted.")
    try:
        answer = input("  Enter a value: ")
    except EOFError:
        return False
    return answer.strip() == "yes"


def _print_change(outcome) -> None:
    change = outcome.change
    slug, error = escaped(change.slug), escaped(outcome.error)  # a deleted slug is the API's
    if outcome.status == "succeeded":
        verb = {"create": "created", "update": "updated", "delete": "destroyed"}[change.action]
        _say(f"{slug}: {verb}")
    elif outcome.status == "failed":
        _say(f"{slug}: {change.action} FAILED: {error}")
    else:
        _say(f"{slug}: {change.action} skipped: {error}")


def _print_test(outcome) -> None:
    if outcome.skipped:
        _say(f"test {outcome.slug} {outcome.image}: skipped ({outcome.error})")
        return
    mark = "ok" if outcome.ok else "FAILED"
    line = f"test {outcome.slug} {outcome.image}: {mark} (upstream status {outcome.status})"
    if not outcome.ok:
        line += f": {outcome.error}" if outcome.error else ""
        if outcome.advice:
            line += f"\n    {outcome.advice}"
    _say(line)


@app.command()
def apply(
    ctx: typer.Context,
    planfile: Annotated[
        Path | None, typer.Argument(help="A plan saved by `regsync plan --out`.")
    ] = None,
    config: ConfigOpt = Path("registries.yaml"),
    state: StateOpt = None,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Apply without asking.")
    ] = False,
    parallelism: Annotated[
        int, typer.Option(min=1, max=32, help="Changes and tests run at once.")
    ] = 4,
    skip_tests: Annotated[bool, typer.Option("--skip-tests", help="Do not run the image tests.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Apply even when deletes exceed settings.max_deletes.")
    ] = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write a JSON report of each change and test.")
    ] = None,
    report_format: Annotated[
        ReportFormat,
        typer.Option("--report-format", help="--report as JSON, or as markdown for a CI job summary."),
    ] = ReportFormat.json,
    expect_plan: Annotated[
        str | None,
        typer.Option(
            "--expect-plan",
            help="Apply only if the plan has this digest (sha256:..., or a file holding a "
            "markdown or JSON plan); refuse before any change otherwise.",
            show_default=False,
        ),
    ] = None,
    target: TargetOpt = None,
    prune: PruneOpt = False,
    check_credentials: Annotated[
        bool,
        typer.Option(
            "--check-credentials",
            help="Before any change, have the API pull each new or changed registry's first "
            "tests: image with the file's credentials; change nothing when one fails.",
        ),
    ] = False,
    lock_timeout: LockTimeoutOpt = "0s",
    rekey: RekeyOpt = False,
    replace: ReplaceOpt = None,
    api_token: TokenOpt = None,
    api_origin: OriginOpt = None,
) -> int:
    """Make the calls the plan names, then run the image tests."""
    from reconciler import workflow

    env = os.environ
    saved = None
    if planfile is not None:
        from reconciler.planfile import load_plan

        fixed = _given(ctx, {"config": "--config", "state": "--state", "target": "--target",
                             "prune": "--prune", "rekey": "--rekey", "replace": "--replace"})
        if fixed:
            raise typer.BadParameter(
                f"a saved plan carries the registries file, state file, --target, --prune, "
                f"--rekey and --replace it was made with, so {'/'.join(fixed)} cannot be given beside it; "
                "give them to `regsync plan`, not to apply", param_hint="PLANFILE",
            )
        saved = load_plan(planfile)
        config = Path(saved.config_path)
        prune, target = saved.prune, list(saved.targets)
        rekey, replace = saved.rekey, list(saved.replace)
        if state is None and saved.state_path:
            state = saved.state_path
    elif not auto_approve and not sys.stdin.isatty():
        _err(
            "error: apply needs confirmation, and there is no terminal to ask on: "
            "pass --auto-approve, or apply a plan saved with `regsync plan --out FILE`"
        )
        return EXIT_ERROR
    if report:
        _check_writable(report)  # before any change: a bad path must not fail a done apply
    expected = None
    if expect_plan is not None:
        from reconciler.digest import parse_expected

        expected = parse_expected(expect_plan)
    result = workflow.run_apply(
        config,
        env=env,
        token=api_token,
        origin=api_origin,
        state_path=state,
        saved=saved,
        expected=expected,
        prune=prune,
        targets=target or (),
        parallelism=parallelism,
        skip_tests=skip_tests,
        force=force,
        check_credentials=check_credentials,
        on_checks=lambda checks: _render_checks(checks, PlanFormat.text, sys.stdout),
        lock_timeout=_duration(lock_timeout),
        rekey=rekey,
        replace=replace or (),
        on_lock_wait=lambda holder: _err(
            f"Waiting up to {lock_timeout} for the state's lock: {holder.describe()}"),
        on_config=_print_warnings,
        show_plan=None if saved else lambda p: _render_plan(p, PlanFormat.text, sys.stdout),
        confirm=None if (saved or auto_approve) else _confirm,
        on_change=_print_change,
        on_test=_print_test,
    )
    if result is None:
        _err("Apply cancelled; nothing was changed.")
        return EXIT_ERROR
    if report and report_format is ReportFormat.markdown:
        from reconciler.report import apply_markdown

        _write_text(report, apply_markdown(result))
    elif report:
        _write_json(report, result.report_data())
    from reconciler.report import summary_line

    failed = result.counts["failed"]
    if failed:
        _err(f"{failed} change(s) failed; the state records what succeeded.")
    _say(summary_line(result))  # `Apply complete: ...` only when nothing failed
    return EXIT_OK if result.ok else EXIT_ERROR


def _given(ctx: typer.Context, options: dict[str, str]) -> list[str]:
    """The ``options`` (parameter name -> flag) given on the command line."""
    return [flag for name, flag in options.items()
            if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"]


def _check_writable(path: Path) -> None:
    try:
        with open(path, "a"):
            pass
    except OSError as exc:
        raise RegsyncError(f"cannot write {path}: {exc.strerror}") from exc


def _write_json(path: Path, data) -> None:
    import json

    _write_text(path, json.dumps(data, indent=2) + "\n")


def _write_text(path: Path, text: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise RegsyncError(f"cannot write {path}: {exc.strerror}") from exc


@app.command("test")
def test_images(
    config: ConfigOpt = Path("registries.yaml"),
    slug: Annotated[
        list[str] | None, typer.Option("--slug", help="Test only this registry (repeatable).")
    ] = None,
    parallelism: Annotated[int, typer.Option(min=1, max=32, help="Image tests run at once.")] = 4,
    api_token: TokenOpt = None,
    api_origin: OriginOpt = None,
) -> int:
    """Run the image tests only: ask Replicated to pull each listed image."""
    from reconciler import workflow
    from reconciler.apply import run_image_tests
    from reconciler.config import load_config

    cfg = load_config(str(config))
    _print_warnings(cfg)
    known = {r.slug for r in cfg.registries}
    unknown = sorted(set(slug or ()) - known)
    if unknown:
        raise RegsyncError(f"{config}: no registry with slug {', '.join(map(repr, unknown))}")
    listed = [r.slug for r in cfg.registries if r.tests and (not slug or r.slug in slug)]
    if not listed:
        which = "none of the registries given with --slug has" if slug else "no registry in it has"
        raise RegsyncError(
            f"{config}: nothing to test: {which} `tests:` (a list of images to pull, "
            "e.g. tests: [library/alpine:3.20])"
        )
    with workflow.open_api(os.environ, token=api_token, origin=api_origin) as api:
        api.mask_also(workflow.env_secrets(cfg, os.environ))  # the API may repeat them
        tests = run_image_tests(
            cfg, api, parallelism=parallelism, slugs=set(slug) if slug else None,
            on_event=_print_test,
        )
    passed = sum(1 for t in tests if t.ok)
    print(f"tests: {passed} passed, {len(tests) - passed} failed.")
    return EXIT_OK if passed == len(tests) else EXIT_ERROR


@app.command("import")
def import_registries(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output file.")] = False,
    api_token: TokenOpt = None,
    api_origin: OriginOpt = None,
) -> int:
    """Write a registries file from the team's current registries."""
    from reconciler import workflow
    from reconciler.apps import scope_names
    from reconciler.importer import import_registries
    from reconciler.render import printable

    if output is not None and output.exists() and not force:
        raise RegsyncError(f"{output} exists; pass --force to overwrite it")
    with workflow.open_api(os.environ, token=api_token, origin=api_origin) as api:
        remote = api.list_registries()
        imported = import_registries(remote, app_names=scope_names(api, remote))
    text = imported.text
    for slug, why in imported.refused:
        _err(printable(f"note: {slug!r} is written commented out: {why}"))
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            output.write_text(text)
        except OSError as exc:
            raise RegsyncError(f"cannot write {output}: {exc.strerror}") from exc
        _err(f"Wrote {output}. Set the ${{VAR}}s it names, then run: regsync plan -c {output}")
    return EXIT_OK


@app.command("ls")
def list_registries(
    fmt: Annotated[ListFormat, typer.Option("--format", help="Output format.")] = ListFormat.table,
    api_token: TokenOpt = None,
    api_origin: OriginOpt = None,
) -> int:
    """List the team's registries."""
    from reconciler import render, workflow

    with workflow.open_api(os.environ, token=api_token, origin=api_origin) as api:
        remote = api.list_registries()
    if fmt is ListFormat.json:
        render.registries_json(remote, sys.stdout)
    else:
        render.registries_table(remote, sys.stdout)
        if not remote:
            _err("The team has no external registries.")
    return EXIT_OK


@app.command("logs")
def registry_logs(
    slugs: Annotated[
        list[str] | None,
        typer.Argument(help="Registries to show. [default: every registry of the team]", show_default=False),
    ] = None,
    fmt: Annotated[ListFormat, typer.Option("--format", help="Output format.")] = ListFormat.table,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="DURATION", help="Only entries this recent: 30m, 24h, 7d, 1h30m.",
                     show_default=False),
    ] = None,
    failures: Annotated[bool, typer.Option("--failures", help="Only failed pulls and tests.")] = False,
    api_token: TokenOpt = None,
    api_origin: OriginOpt = None,
) -> int:
    """Show the pull logs the Vendor API keeps for the team's registries."""
    from reconciler import logs, workflow

    window = None
    if since is not None:
        try:
            window = logs.parse_duration(since)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--since") from None
    with workflow.open_api(os.environ, token=api_token, origin=api_origin) as api:
        entries = logs.select(logs.fetch(api, slugs or ()), since=window, failures=failures)
    if fmt is ListFormat.json:
        logs.render_json(entries, sys.stdout)
    elif entries:
        logs.render_table(entries, sys.stdout)
    else:
        _err("No log entries" + (" match" if window or failures else "") + ".")
    return EXIT_OK


@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8800,
    db: Annotated[
        Path, typer.Option(help="SQLite file for the sandbox's state (':memory:' for none).")
    ] = Path("regsync-sandbox.db"),
    token: Annotated[
        str | None,
        typer.Option(help="API token clients must send. [default: $REGSYNC_SANDBOX_TOKEN or sandbox-token]",
                     show_default=False),
    ] = None,
    latency_ms: Annotated[int, typer.Option(min=0, help="Latency added to every API call.")] = 0,
    fail_before_commit: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of write calls answered 503, nothing done.")
    ] = 0.0,
    lose_after_commit: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of write calls done, then answered with nothing.")
    ] = 0.0,
    rate_limit: Annotated[
        str | None, typer.Option(help="N/SECONDS: answer 429 past N calls per SECONDS.", show_default=False)
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the random faults.")] = None,
    app_seed: Annotated[
        list[str] | None,
        typer.Option("--app", help="SLUG or SLUG=ID: an app the team has (GET /v3/apps); repeatable.",
                     show_default=False),
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option(help="Key for credentials at rest. [default: $REGSYNC_SANDBOX_KEY, else DB.key, made 0600]",
                     show_default=False),
    ] = None,
) -> int:
    """Serve a local stand-in for the Vendor API's external registries."""
    from reconciler.sandbox.faults import parse_rate_limit
    from reconciler.sandbox.server import run

    limit = None
    if rate_limit:
        try:
            limit = parse_rate_limit(rate_limit)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--rate-limit") from None
    run(
        host=host,
        port=port,
        db=str(db),
        token=token,
        key_file=str(key_file) if key_file else None,
        latency_ms=latency_ms,
        fail_before_rate=fail_before_commit,
        lose_after_rate=lose_after_commit,
        rate_limit=limit,
        seed=seed,
        apps=app_seed or (),
        out=sys.stderr,
    )
    return EXIT_OK


from reconciler import cli_github  # noqa: E402  (typer only: `regsync github ...`)

app.add_typer(cli_github.app, name="github")


from reconciler import cli_state  # noqa: E402  (`regsync state ...`)

app.add_typer(cli_state.app, name="state")


def _click_exception_types():
    # typer vendors click and re-exports only some of its exceptions; find the base
    # of its usage errors without reaching into a private module.
    base = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    return base, typer.Abort


def _app_for(args: list[str]) -> typer.Typer:
    """For `regsync COMMAND ...`, an app holding only that command; else the whole app.

    Typer introspects the signature of every registered command on each run (~11 ms for
    all of them); `validate` runs as a pre-commit hook, so only the one invoked is built.
    """
    from typer.main import get_command_name

    for info in app.registered_commands:
        name = info.name or (get_command_name(info.callback.__name__) if info.callback else None)
        if args and args[0] == name:
            one = typer.Typer(**_APP_SETTINGS)
            one.registered_callback = app.registered_callback
            one.registered_commands = [info]
            return one
    return app


def _usage_error(exc) -> None:
    """Click's usage message, with the one spelling of the prefix: ``error:``."""
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        _err(f"{ctx.get_usage()}\nTry '{ctx.command_path} -h' for help.\n")
    _err(f"error: {exc.format_message()}")


def _interrupted() -> int:
    # On a terminal the cursor may sit after "^C" or a prompt: end that line first.
    _err(("\n" if sys.stderr.isatty() else "") + "Interrupted.")
    return EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """The one error boundary: expected errors -> message and 1; bugs -> 3; Ctrl-C -> 130."""
    click_exc, abort = _click_exception_types()
    args = sys.argv[1:] if argv is None else argv
    try:
        rv = _app_for(args)(args=args, prog_name="regsync", standalone_mode=False)
    except ConfigError as exc:
        _listing(exc.diagnostics + exc.warnings, sys.stderr)
        code = EXIT_ERROR
    except RegsyncError as exc:
        # each line escaped: no message, whatever it quotes, can drive the terminal
        _err("error: " + "\n".join(escaped(line) for line in str(exc).split("\n")))
        code = EXIT_ERROR
    except click_exc as exc:
        _usage_error(exc)
        code = EXIT_ERROR  # usage errors are 1, so that 2 always means "changes"
    except abort as exc:
        if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
            code = _interrupted()
        else:
            _err("Aborted.")
            code = EXIT_ERROR
    except KeyboardInterrupt:
        code = _interrupted()
    except BrokenPipeError:
        code = EXIT_ERROR
    except Exception as exc:  # a bug: one line, no traceback unless asked for
        if os.environ.get("REGSYNC_DEBUG"):
            import traceback

            traceback.print_exc()
        _err(
            f"error: internal error in regsync ({type(exc).__name__}). This is a bug; "
            "rerun with REGSYNC_DEBUG=1 to see the traceback."
        )
        code = EXIT_BUG
    else:
        code = rv if isinstance(rv, int) else EXIT_OK
        if code == EXIT_INTERRUPTED:  # typer turns Ctrl-C into exit code 130, silently
            code = _interrupted()
    if argv is None:
        sys.exit(code)
    return code
