"""The steps of `plan` and `apply`, composed: what the CLI calls.

Everything here takes its dependencies (environment, API client) as arguments and
returns values; nothing prints. The order matters and is the safety story:

1. load and validate the file (no secret is resolved before it is valid, so no
   schema error can ever contain one);
2. resolve secrets (an unset variable stops everything before any network call);
3. list the team's registries (one API call, whatever their number);
4. load the state, diff, and build the Plan.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler.model import Config, RemoteRegistry

STATE_FILENAME = "regsync.state.json"


def default_state_path(config_path: str | os.PathLike) -> Path:
    """The state file lives beside the registries file it belongs to."""
    return Path(config_path).resolve().parent / STATE_FILENAME


def api_token(env: Mapping[str, str], token: str | None = None) -> str:
    """The API token (``--api-token``, else ``REPLICATED_API_TOKEN``); the one rule and
    message for "there is no token" are ``reconciler.api.token_from``'s."""
    from reconciler.api import token_from

    return token_from(env, token).reveal()


def open_api(env: Mapping[str, str], *, token: str | None = None, origin: str | None = None):
    from reconciler.api import from_env

    return from_env(env, token=api_token(env, token), origin=origin)


def _settle() -> None:
    """What was just loaded lives until the run ends: it is moved out of the garbage
    collector's sight, so that the collections the list and the diff trigger, and the
    one at exit, do not scan it again (~60 ms of a plan of 5,000 registries)."""
    import gc

    gc.freeze()


@dataclass
class Session:
    """One plan's inputs and result, kept together so apply can use them."""

    config: Config
    state_path: Path
    state: object  # reconciler.state.State
    remote: list[RemoteRegistry]
    fingerprinter: object  # reconciler.state.Fingerprinter
    plan: object  # reconciler.plan.Plan
    prune: bool
    targets: tuple[str, ...]
    checks: tuple | None = None  # CredentialChecks, when --check-credentials ran

    @property
    def config_path(self) -> Path:
        return Path(self.config.path)

    def fingerprints(self) -> dict[str, str]:
        from reconciler.planfile import fingerprints

        return fingerprints(self.config, self.fingerprinter)


def load_desired(config_path: str | os.PathLike, *, env: Mapping[str, str]) -> Config:
    """Steps 1 and 2: the checked file with its secrets resolved (no network)."""
    from reconciler.config import load_config
    from reconciler.secrets import resolve_secrets

    return resolve_secrets(load_config(str(config_path)), env=env)


def make_plan(
    config: Config,
    *,
    env: Mapping[str, str],
    api,
    token: str,
    state_path: str | os.PathLike | None = None,
    prune: bool = False,
    targets: Collection[str] = (),
) -> Session:
    """Steps 3 and 4, for a ``config`` from ``load_desired``."""
    from reconciler.apps import app_names, needs_apps, resolve_apps
    from reconciler.diff import diff
    from reconciler.state import Fingerprinter, load_state, state_key

    names = None
    if needs_apps(config):  # one GET /v3/apps, only when the file names apps by slug
        team_apps = api.list_apps()
        config = resolve_apps(config, team_apps)
        names = app_names(team_apps)
    remote = api.list_registries()
    state_file = Path(state_path) if state_path else default_state_path(config.path)
    state = load_state(state_file)
    fingerprinter = Fingerprinter(state_key(env, token))
    plan = diff(
        config,
        remote,
        state,
        fingerprinter,
        prune=prune,
        targets=set(targets) if targets else None,
        app_names=names,
    )
    plan = _with_digest(plan, config, fingerprinter)
    return Session(
        config=config,
        state_path=state_file,
        state=state,
        remote=remote,
        fingerprinter=fingerprinter,
        plan=plan,
        prune=prune,
        targets=tuple(targets),
    )


def _with_digest(plan, config: Config, fingerprinter):
    """The plan with what its markdown and JSON views show beyond the changes."""
    from dataclasses import replace

    from reconciler.digest import items, plan_digest

    return replace(
        plan,
        source=str(config.path),
        file_warnings=tuple(str(w) for w in config.warnings),
        digest=plan_digest(plan, fingerprinter),
        digest_items=tuple(items(plan, fingerprinter)),
    )


def run_plan(
    config_path: str | os.PathLike,
    *,
    env: Mapping[str, str],
    token: str | None = None,
    origin: str | None = None,
    state_path: str | os.PathLike | None = None,
    prune: bool = False,
    targets: Collection[str] = (),
    check_credentials: bool = False,
) -> Session:
    """Steps 1 to 4, in their order: the file, its secrets, the token, then the API;
    with ``check_credentials``, the API then tests each new or changed registry's
    credentials from the file (``Session.checks``)."""
    desired = load_desired(config_path, env=env)
    _settle()
    token = api_token(env, token)
    with open_api(env, token=token, origin=origin) as api:
        session = make_plan(desired, env=env, api=api, token=token, state_path=state_path,
                            prune=prune, targets=targets)
        if check_credentials:
            from reconciler.credcheck import check_credentials as run_checks

            session.checks = run_checks(session.plan, api)
        return session


def run_apply(
    config_path: str | os.PathLike,
    *,
    env: Mapping[str, str],
    token: str | None = None,
    origin: str | None = None,
    state_path: str | os.PathLike | None = None,
    saved=None,
    expected=None,
    prune: bool = False,
    targets: Collection[str] = (),
    parallelism: int = 4,
    skip_tests: bool = False,
    force: bool = False,
    check_credentials: bool = False,
    on_checks: Callable | None = None,
    on_config: Callable[[Config], None] = lambda config: None,
    show_plan: Callable | None = None,
    confirm: Callable | None = None,
    on_change: Callable | None = None,
    on_test: Callable | None = None,
):
    """Plan under the state lock; refuse a saved plan that no longer holds, and more
    deletes than max_deletes unless ``force``; show the plan; with
    ``check_credentials``, test the file's credentials (``on_checks`` sees the results)
    and change nothing when one fails; ask ``confirm`` when given; make the changes;
    run the image tests. Returns the ``ApplyResult``, or None when ``confirm`` said no
    (nothing was changed)."""
    from reconciler.apply import (
        ApplyResult, apply_plan, run_image_tests, skipped_tests, untestable,
    )
    from reconciler.state import StateLock

    desired = load_desired(config_path, env=env)
    _settle()
    token = api_token(env, token)
    state_file = Path(state_path) if state_path else default_state_path(config_path)
    with open_api(env, token=token, origin=origin) as api, StateLock(state_file):
        session = make_plan(
            desired, env=env, api=api, token=token, state_path=state_file, prune=prune,
            targets=targets,
        )
        on_config(session.config)
        if saved is not None:
            check_saved_plan(saved, session)
        if expected is not None:  # --expect-plan: a reviewed digest, before any change
            from reconciler.digest import check_expected

            check_expected(expected, session.plan, session.fingerprinter)
        if show_plan is not None:
            show_plan(session.plan)
        session.plan.raise_if_unsafe(force=force)  # before asking: a refusal asks nothing
        if check_credentials:
            from reconciler.credcheck import check_credentials as run_checks
            from reconciler.credcheck import raise_if_failed

            checks = run_checks(session.plan, api, parallelism=parallelism)
            if on_checks is not None:
                on_checks(checks)
            raise_if_failed(checks)  # before asking, and before any change
        if confirm is not None and session.plan.has_changes and not confirm(session.plan):
            return None
        outcomes = apply_plan(
            session.plan, api, state=session.state, state_path=session.state_path,
            fingerprinter=session.fingerprinter, parallelism=parallelism, on_event=on_change,
        )
        slugs = None
        if targets:  # globs, like settings.ignore
            from reconciler.model import matches

            slugs = {r.slug for r in session.config.registries if matches(r.slug, targets)}
        if skip_tests:
            tests = skipped_tests(session.config, reason="--skip-tests", slugs=slugs)
        else:
            tests = run_image_tests(
                session.config, api, parallelism=parallelism, slugs=slugs,
                skip=untestable(outcomes), on_event=on_test,
            )
    return ApplyResult(changes=tuple(outcomes), tests=tuple(tests))


def save_session_plan(session: Session, out: str | os.PathLike) -> None:
    from reconciler.planfile import config_digest, remote_digest, save_plan

    save_plan(
        out,
        session.plan,
        # absolute, so that `apply PLANFILE` works from any directory
        config_path=str(session.config_path.resolve()),
        config_sha256=config_digest(session.config_path),
        remote_sha256=remote_digest(session.remote),
        fingerprints=session.fingerprints(),
        key_id=session.fingerprinter.key_id,
        prune=session.prune,
        targets=session.targets,
        state_path=str(session.state_path.resolve()),
    )


def check_saved_plan(saved, session: Session) -> None:
    """Refuse a saved plan that no longer describes what apply would do."""
    from reconciler.planfile import check_fresh, config_digest, remote_digest

    check_fresh(
        saved,
        config_sha256=config_digest(session.config_path),
        remote_sha256=remote_digest(session.remote),
        fingerprints=session.fingerprints(),
        plan=session.plan,
        key_id=session.fingerprinter.key_id,
    )
