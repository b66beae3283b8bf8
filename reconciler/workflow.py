"""The steps of `plan` and `apply`, composed: what the CLI calls.

Everything here takes its dependencies (environment, API client) as arguments and
returns values; nothing prints. The order matters and is the safety story:

1. load and validate the file (no secret is resolved before it is valid, so no
   schema error can ever contain one);
2. resolve secrets (an unset variable stops everything before any network call);
3. list the team's registries (one API call, whatever their number);
4. load the state (and check its key), diff, and build the Plan.

Where the state lives is chosen here, first match wins: ``--state``, ``$REGSYNC_STATE``,
``settings.state``, else ``regsync.state.json`` beside the registries file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.model import Config, RemoteRegistry

if TYPE_CHECKING:  # imported where used at run time: validate and --help stay light
    from reconciler.plan import Plan
    from reconciler.state import Fingerprinter, State
    from reconciler.state.store import StateStore

STATE_FILENAME = "regsync.state.json"


def default_state_path(config_path: str | os.PathLike) -> Path:
    """The state file lives beside the registries file it belongs to."""
    return Path(config_path).resolve().parent / STATE_FILENAME


def state_location(option, *, env: Mapping[str, str], config_path, settings_state: str | None = None):
    """The state's Location: ``--state``, ``$REGSYNC_STATE``, ``settings.state``, or
    the default. A form regsync does not know is a StateError."""
    from reconciler.errors import StateError
    from reconciler.state.location import choose_location

    try:
        return choose_location(option, env=env, settings_state=settings_state, config_path=config_path)
    except ValueError as exc:
        raise StateError(str(exc)) from None


def open_store(location, config_path):
    """The StateStore for ``location``; a git: state uses the registries file's repository."""
    from reconciler.state.store import StateStore

    return StateStore(location, repo_dir=Path(config_path).resolve().parent)


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
    store: StateStore
    state: State
    remote: list[RemoteRegistry]
    fingerprinter: Fingerprinter
    plan: Plan
    prune: bool
    targets: tuple[str, ...]
    checks: tuple | None = None  # CredentialChecks, when --check-credentials ran
    rekeyed: bool = False  # --rekey dropped fingerprints of another key
    rekey: bool = False  # --rekey and --replace as given: a saved plan repeats them
    replace: tuple[str, ...] = ()

    @property
    def state_path(self) -> str:
        """The state's location, as --state takes it."""
        return str(self.store.location)

    @property
    def saved_state_path(self) -> str:
        """The location for a saved plan: a local file's path made absolute, so that the
        plan can be applied from another directory."""
        location = self.store.location
        return os.path.abspath(location.path) if location.kind == "file" else str(location)

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


def env_secrets(config: Config, env: Mapping[str, str]) -> list[str]:
    """The credentials of ``config`` its ``${VAR}``s name and ``env`` sets, for
    masking where the secrets are not resolved (``regsync test`` needs none)."""
    return [env[r.secret_ref.env_var] for r in config.registries
            if r.secret_ref.env_var and env.get(r.secret_ref.env_var)]


def make_plan(
    config: Config,
    *,
    env: Mapping[str, str],
    api,
    token: str,
    state_path: str | os.PathLike | None = None,
    prune: bool = False,
    targets: Collection[str] = (),
    store=None,
    rekey: bool = False,
    replace: Collection[str] = (),
) -> Session:
    """Steps 3 and 4, for a ``config`` from ``load_desired``. ``replace``: slugs whose
    credentials are set again even when their fingerprint matches."""
    from reconciler.apps import app_names, needs_apps, resolve_apps
    from reconciler.diff import diff
    from reconciler.state import Fingerprinter
    from reconciler.state.store import check_key, fingerprint_key

    if store is None:
        location = state_location(state_path, env=env, config_path=config.path,
                                  settings_state=config.settings.state)
        store = open_store(location, config.path)
    fingerprinter = Fingerprinter(fingerprint_key(store.location, env, token))
    # the API may repeat a saved credential in any answer, a test by slug's included
    api.mask_also(r.secret for r in config.registries)
    unknown = sorted(set(replace) - set(config.by_slug()))
    if unknown:
        from reconciler.errors import RegsyncError

        raise RegsyncError(f"{config.path}: --replace: no registry with slug {', '.join(map(repr, unknown))}")
    state = store.load()
    rekeyed = check_key(store.location, state, fingerprinter, rekey=rekey)
    for slug in replace:
        record = state.registries.get(slug)
        if record is not None:
            from dataclasses import replace as with_fields

            state.registries[slug] = with_fields(record, fingerprint=None)
    names = None
    if needs_apps(config):  # one GET /v3/apps, only when the file names apps by slug
        team_apps = api.list_apps()
        config = resolve_apps(config, team_apps)
        names = app_names(team_apps)
    remote = api.list_registries()
    plan = diff(
        config,
        remote,
        state,
        fingerprinter,
        prune=prune,
        targets=set(targets) if targets else None,
        app_names=names,
    )
    plan = _with_new_state_warning(plan, store, remote, config)
    plan = _with_digest(plan, config, fingerprinter)
    return Session(
        config=config,
        store=store,
        state=state,
        remote=remote,
        fingerprinter=fingerprinter,
        plan=plan,
        prune=prune,
        targets=tuple(targets),
        rekeyed=rekeyed,
        rekey=rekey,
        replace=tuple(replace),
    )


def _with_new_state_warning(plan, store, remote, config: Config):
    """The plan, warned when a shared state does not exist yet although the team already
    has registries the file lists: a mistyped branch or key reads as a new, empty state,
    which would show every credential as "will be set"."""
    from dataclasses import replace

    if not store.location.shared or store.exists:
        return plan
    listed = set(config.by_slug())
    known = sum(1 for r in remote if r.slug in listed)
    if not known:
        return plan
    where = "no such branch on origin" if store.location.kind == "git" else "no such object"
    warning = (
        f"the state {store.location} does not exist yet ({where}), but the team already has "
        f"{known} of the file's registries: their credentials show as \"will be set\". If a "
        "state was expected there, check the location; otherwise the first apply creates it"
    )
    return replace(plan, warnings=(*plan.warnings, warning))


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
    rekey: bool = False,
    replace: Collection[str] = (),
) -> Session:
    """Steps 1 to 4, in their order: the file, its secrets, the token, then the API;
    with ``check_credentials``, the API then tests each new or changed registry's
    credentials from the file (``Session.checks``). The state is read without its
    lock: a plan needs only read access."""
    desired = load_desired(config_path, env=env)
    _settle()
    token = api_token(env, token)
    location = state_location(state_path, env=env, config_path=desired.path,
                              settings_state=desired.settings.state)
    store = open_store(location, desired.path)
    with open_api(env, token=token, origin=origin) as api:
        session = make_plan(desired, env=env, api=api, token=token, store=store,
                            prune=prune, targets=targets, rekey=rekey, replace=replace)
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
    lock_timeout: float = 0.0,
    rekey: bool = False,
    replace: Collection[str] = (),
    on_lock_wait: Callable | None = None,
    on_config: Callable[[Config], None] = lambda config: None,
    show_plan: Callable | None = None,
    confirm: Callable | None = None,
    on_change: Callable | None = None,
    on_test: Callable | None = None,
):
    """Plan under the state's lock (held for the whole run); refuse a saved plan that no longer holds, and more
    deletes than max_deletes unless ``force``; show the plan; with
    ``check_credentials``, test the file's credentials (``on_checks`` sees the results)
    and change nothing when one fails; ask ``confirm`` when given; make the changes;
    run the image tests. Returns the ``ApplyResult``, or None when ``confirm`` said no
    (nothing was changed)."""
    from reconciler.apply import (
        ApplyResult,
        apply_plan,
        run_image_tests,
        skipped_tests,
        untestable,
    )
    desired = load_desired(config_path, env=env)
    _settle()
    token = api_token(env, token)
    location = state_location(state_path, env=env, config_path=desired.path,
                              settings_state=desired.settings.state)
    store = open_store(location, desired.path)
    with open_api(env, token=token, origin=origin) as api, \
            store.locked("apply", timeout=lock_timeout, on_wait=on_lock_wait):
        session = make_plan(
            desired, env=env, api=api, token=token, store=store, prune=prune,
            targets=targets, rekey=rekey, replace=replace,
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
        writer = store.writer(session.state, key_id=session.fingerprinter.key_id,
                              compact_first=session.rekeyed)
        try:
            outcomes = apply_plan(
                session.plan, api, state=session.state, fingerprinter=session.fingerprinter,
                parallelism=parallelism, on_event=on_change, writer=writer,
            )
        finally:
            writer.close()  # the journal compacted, or the last push: before the tests
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
        state_path=session.saved_state_path,
        rekey=session.rekey,
        replace=session.replace,
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
