"""`regsync state ...`: show, unlock, rm, migrate and new-key (reconciler/state/commands.py
does the work). Thin: options, one call, output, an exit code."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from reconciler.cli import (
    _APP_SETTINGS,
    EXIT_OK,
    AppSettings,
    ConfigOpt,
    LockTimeoutOpt,
    StateOpt,
    _duration,
    _err,
)

_STATE_SETTINGS: AppSettings = {
    **_APP_SETTINGS, "name": "state",
    "help": "Inspect and manage the state: show, unlock, rm, migrate, new-key.",
}
# annotated: mypy cannot infer it through the import cycle with reconciler.cli
app: typer.Typer = typer.Typer(**_STATE_SETTINGS)


class StateFormat(str, Enum):
    text = "text"
    json = "json"


def _state_store(config: Path, state: str | None):
    from reconciler.state.commands import open_store

    return open_store(state, env=os.environ, config_path=config)


@app.command("show")
def state_show(
    config: ConfigOpt = Path("registries.yaml"),
    state: StateOpt = None,
    fmt: Annotated[StateFormat, typer.Option("--format", help="Output format.")] = StateFormat.text,
) -> int:
    """What the state records per registry, and where it lives (never a secret)."""
    from reconciler import render
    from reconciler.state.commands import show_data

    data = show_data(_state_store(config, state), os.environ)
    if fmt is StateFormat.json:
        _write_json_stream(data)
    else:
        render.state_text(data, sys.stdout)
    return EXIT_OK


@app.command("unlock")
def state_unlock(
    lock_id: Annotated[str, typer.Argument(help="The ID the lock error printed.")],
    config: ConfigOpt = Path("registries.yaml"),
    state: StateOpt = None,
) -> int:
    """Remove a lock left by a run that crashed or was killed."""
    store = _state_store(config, state)
    store.backend.force_unlock(lock_id)
    _err(f"Removed lock {lock_id} from {store.location}.")
    return EXIT_OK


@app.command("rm")
def state_rm(
    slugs: Annotated[list[str], typer.Argument(help="Slugs to forget.")],
    config: ConfigOpt = Path("registries.yaml"),
    state: StateOpt = None,
    lock_timeout: LockTimeoutOpt = "0s",
) -> int:
    """Forget registries: the next apply sets their credentials again."""
    from reconciler.state.commands import remove

    store = _state_store(config, state)
    removed = remove(store, slugs, lock_timeout=_duration(lock_timeout))
    _err(f"Removed {', '.join(removed)} from {store.location}; the next apply sets their credentials again.")
    return EXIT_OK


@app.command("migrate")
def state_migrate(
    to: Annotated[str, typer.Option("--to", help="The new location: PATH, s3://BUCKET/KEY or git:BRANCH.")],
    config: ConfigOpt = Path("registries.yaml"),
    state: StateOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a state already there.")] = False,
    lock_timeout: LockTimeoutOpt = "0s",
) -> int:
    """Copy the state to another backend, fingerprints and all."""
    from reconciler.state.commands import migrate

    source = _state_store(config, state)
    target, count = migrate(source, to, env=os.environ, config_path=config, force=force,
                            lock_timeout=_duration(lock_timeout))
    _err(f"Copied the state ({count} registries) from {source.location} to {target}; "
         f"the old one is left as it was.")
    _err(f"Use it from now on: in {config}, under settings:, write")
    print(f"  state: {target}")
    return EXIT_OK


@app.command("new-key")
def state_new_key() -> int:
    """Print a random 256-bit key for REGSYNC_STATE_KEY."""
    from reconciler.state.store import new_key

    print(new_key())
    _err("Store it as a secret named REGSYNC_STATE_KEY for every job and person that runs regsync.")
    return EXIT_OK


def _write_json_stream(data) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2) + "\n")
