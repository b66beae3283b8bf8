"""Where the state lives, as a user writes it: ``PATH`` / ``file:PATH``, ``s3://BUCKET/KEY``
or ``git:BRANCH``; and which one a command uses.

Pure: no I/O, no heavy import (``validate`` checks ``settings.state`` with it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

STATE_FILENAME = "regsync.state.json"
ENV_VAR = "REGSYNC_STATE"
FORMS = "PATH, file:PATH, s3://BUCKET/KEY or git:BRANCH"

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_BAD_BRANCH = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


@dataclass(frozen=True)
class Location:
    kind: str  # "file" | "s3" | "git"
    path: str  # the file's path, the object's key, or the branch
    bucket: str = ""

    @property
    def shared(self) -> bool:
        """A backend a team shares (and that needs REGSYNC_STATE_KEY)."""
        return self.kind != "file"

    def __str__(self) -> str:
        if self.kind == "s3":
            return f"s3://{self.bucket}/{self.path}"
        if self.kind == "git":
            return f"git:{self.path}"
        return self.path


def _branch_problem(branch: str) -> str | None:
    if not branch:
        return "git: needs a branch name (git:regsync-state)"
    if (
        _BAD_BRANCH.search(branch)
        or branch.startswith(("-", "/", "."))
        or branch.endswith(("/", ".", ".lock"))
        or "/." in branch
        or branch == "@"
    ):
        return f"{branch!r} is not a valid git branch name"
    return None


def parse_location(text: str, *, base: str | os.PathLike | None = None) -> Location:
    """The Location ``text`` names; a relative file path is taken from ``base`` (a
    directory) when given. Raises ValueError with a one-line reason."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"the state location is empty; use {FORMS}")
    if text != text.strip() or not text.isprintable():
        raise ValueError(f"the state location has spaces or control characters around it; use {FORMS}")
    if text.startswith("s3://"):
        bucket, _, key = text[len("s3://"):].partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise ValueError(f"{text!r}: {bucket!r} is not an S3 bucket name; use s3://BUCKET/KEY")
        if not key or key.endswith("/"):
            raise ValueError(f"{text!r} names no object; use s3://BUCKET/KEY (e.g. s3://{bucket}/regsync.state.json)")
        return Location("s3", key, bucket)
    if text.startswith("git:"):
        branch = text[len("git:"):]
        problem = _branch_problem(branch)
        if problem:
            raise ValueError(problem)
        return Location("git", branch)
    if _SCHEME.match(text):
        raise ValueError(f"{text!r} is not a state location regsync knows; use {FORMS}")
    path = text[len("file:"):] if text.startswith("file:") else text
    if not path:
        raise ValueError(f"file: needs a path; use {FORMS}")
    if base is not None and not os.path.isabs(path):
        path = os.path.join(os.fspath(base), path)
    return Location("file", path)


def default_location(config_path: str | os.PathLike) -> Location:
    """The state file beside the registries file it belongs to."""
    return Location("file", str(Path(config_path).resolve().parent / STATE_FILENAME))


def choose_location(
    option: str | os.PathLike | None,
    *,
    env: Mapping[str, str],
    settings_state: str | None,
    config_path: str | os.PathLike,
) -> Location:
    """First match wins: ``--state``, ``$REGSYNC_STATE``, ``settings.state`` (a relative
    path there is beside the registries file), else the default. Raises ValueError."""
    if option is not None and str(option) != "":
        return parse_location(os.fspath(option))
    from_env = env.get(ENV_VAR, "")
    if from_env:
        try:
            return parse_location(from_env)
        except ValueError as exc:
            raise ValueError(f"{ENV_VAR}: {exc}") from None
    if settings_state:
        return parse_location(settings_state, base=Path(config_path).resolve().parent)
    return default_location(config_path)
