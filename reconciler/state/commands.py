"""The work of `regsync state show|unlock|rm|migrate`: values in, values out; the CLI prints."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path

from reconciler.errors import StateError
from reconciler.state.location import Location, parse_location


def settings_state(config_path: str | os.PathLike) -> str | None:
    """``settings.state`` of the registries file, when the file exists (no secret read)."""
    if not Path(config_path).is_file():
        return None
    from reconciler.config import load_config

    return load_config(str(config_path)).settings.state


def open_store(option, *, env: Mapping[str, str], config_path):
    from reconciler import workflow

    location = workflow.state_location(option, env=env, config_path=config_path,
                                       settings_state=settings_state(config_path))
    return workflow.open_store(location, config_path)


def show_data(store, env: Mapping[str, str]) -> dict:
    """What the state records, for `state show`: never a fingerprint's value.
    ``key_matches``: whether REGSYNC_STATE_KEY is the key it was written with (None
    when it is not set, or the state has no key check yet)."""
    from reconciler.state import Fingerprinter
    from reconciler.state.store import KEY_ENV

    state = store.load()
    lock = store.backend.current_lock()
    key = (env.get(KEY_ENV) or "").strip()
    matches = Fingerprinter(key.encode()).key_id == state.key_id if key and state.key_id else None
    return {
        "location": str(store.location),
        "backend": store.location.kind,
        "exists": store.exists,
        "serial": state.serial,
        "lineage": state.lineage,
        "key_check": state.key_id,
        "key_matches": matches,
        "lock": None if lock is None else {
            "id": lock.id, "who": lock.who, "when": lock.when,
            "operation": lock.operation, "version": lock.version,
        },
        "registries": [
            {
                "slug": slug,
                "provider": r.provider,
                "endpoint": r.endpoint,
                "set_at": r.set_at,
                "updated_at": r.updated_at,
                "fingerprint": r.fingerprint is not None,
                "team_id": r.team_id,
            }
            for slug, r in sorted(state.registries.items())
        ],
    }


def remove(store, slugs: Collection[str], *, lock_timeout: float) -> list[str]:
    """Forget ``slugs`` (the next plan re-sets their credentials); the slugs removed."""
    with store.locked("state rm", timeout=lock_timeout):
        state = store.load()
        unknown = sorted(set(slugs) - set(state.registries))
        if unknown:
            raise StateError(
                f"{store.location}: the state records no registry {', '.join(map(repr, unknown))}; "
                "nothing removed (see `regsync state show`)"
            )
        for slug in slugs:
            state.registries.pop(slug, None)
        store.save(state)
    return sorted(set(slugs))


def migrate(source, to: str, *, env: Mapping[str, str], config_path, force: bool,
            lock_timeout: float) -> tuple[Location, int]:
    """Copy the state at ``source`` to ``to``, both locked meanwhile; refuses to replace
    a state there unless ``force``. Returns the destination and how many registries."""
    from reconciler import workflow
    from reconciler.state import Fingerprinter
    from reconciler.state.store import KEY_ENV

    try:
        target = parse_location(to)
    except ValueError as exc:
        raise StateError(f"--to: {exc}") from None
    if target.kind == "file":
        target = Location("file", os.path.abspath(target.path))
    if str(target) == str(source.location) or (
        target.kind == "file" and source.location.kind == "file"
        and os.path.abspath(source.location.path) == target.path
    ):
        raise StateError(f"--to {target}: that is where the state already is")
    dest = workflow.open_store(target, config_path)
    with source.locked("state migrate", timeout=lock_timeout):
        state = source.load()
        if not source.exists and not state.registries:
            raise StateError(f"{source.location}: there is no state to migrate")
        if target.shared and state.key_id and any(r.fingerprint for r in state.registries.values()):
            key = (env.get(KEY_ENV) or "").strip()
            if not key:
                raise StateError(
                    f"{target}: a shared state needs {KEY_ENV}; set it to the key this state "
                    "was written with (`regsync state new-key` makes a new one: then apply "
                    "once with --rekey before migrating)"
                )
            if Fingerprinter(key.encode()).key_id != state.key_id:
                raise StateError(
                    f"{source.location}: this state was written with another key than "
                    f"{KEY_ENV} (key check {state.key_id}); apply once with {KEY_ENV} set and "
                    "--rekey, then migrate, so that the shared state's fingerprints match"
                )
        with dest.locked("state migrate", timeout=lock_timeout):
            dest.load()
            if dest.exists and not force:
                raise StateError(f"{target} already holds a state; pass --force to replace it")
            dest.save(state)
    return target, len(state.registries)
