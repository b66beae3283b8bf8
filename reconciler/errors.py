"""Every error regsync raises on purpose, in one tree.

    RegsyncError                 anything a user can cause or fix; the CLI prints
    |                            str(err) and exits 1, never a traceback
    +-- ConfigError              the registries file is invalid; carries .diagnostics
    +-- SecretError              a secret could not be resolved (unset variable,
    |                            sops failure, bad service-account key)
    +-- StateError               the state file is unreadable, newer, or locked
    +-- PlanError                a saved plan is stale, or a plan is unsafe to apply
    +-- APIError                 the Vendor API refused or failed a call
    |   +-- APIAuthError         401/403, or no token at all
    |   +-- APINotFound          404
    |   +-- APIBadRequest        400 (the API's message says why)
    |   +-- APIServerError       5xx after the retries ran out
    |   +-- APIUnavailable       no answer (connection, timeout) after the retries
    +-- SandboxError             the sandbox cannot start (bad key, port in use)
    +-- GitHubError              the GitHub REST API refused or failed a call (CI helpers)

Lower-level errors (httpx, subprocess, OSError, yaml) are translated once, at the
boundary where they happen, with ``raise Mapped(...) from exc``.

No message built here, or anywhere an instance of these is raised, may contain a
secret value: messages name the field and the variable, never the value.
"""

from __future__ import annotations

from dataclasses import dataclass

#: How much of a string from elsewhere (an API message, a registry's error) is shown.
OUTSIDE_LIMIT = 500


def escaped(text: str) -> str:
    """``text`` on one line with every control or other non-printable character
    escaped (``\\x1b``, ``\\n``, ``\\u202e``), so nothing from elsewhere can move the
    cursor, retitle or clear the terminal, or break a line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def outside(text: str, limit: int = OUTSIDE_LIMIT) -> str:
    """A string from elsewhere made safe to print: escaped, trimmed, and clipped to
    ``limit`` characters (ending in "..." when cut)."""
    text = escaped(text.strip())
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a registries file, with where it is.

    ``context`` is the breadcrumb to the offending item, e.g.
    ``registries[2] (dockerhub "acme")``; empty for document-level problems.
    Lines and columns are 1-based.
    """

    file: str
    line: int
    col: int
    context: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        prefix = "warning: " if self.severity == "warning" else ""
        if self.context:
            text = f"{where}: {prefix}{self.context}: {self.message}"
        else:
            text = f"{where}: {prefix}{self.message}"
        # One line each, and no terminal escapes: a slug or key from the file may hold
        # a line break ("slug: |") or control characters.
        return escaped(text)


class RegsyncError(Exception):
    """Base of every error a user can cause; its text is safe to print."""


class ConfigError(RegsyncError):
    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = [d for d in diagnostics if d.severity == "error"]
        self.warnings = [d for d in diagnostics if d.severity == "warning"]
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class SecretError(RegsyncError):
    pass


class StateError(RegsyncError):
    pass


class PlanError(RegsyncError):
    pass


class SandboxError(RegsyncError):
    pass


class APIError(RegsyncError):
    """A Vendor API call failed. ``status`` is the HTTP status (0 when none)."""

    def __init__(self, message: str, *, status: int = 0, api_message: str = ""):
        self.status = status
        self.api_message = api_message
        super().__init__(message)


class APIAuthError(APIError):
    pass


class APINotFound(APIError):
    pass


class APIBadRequest(APIError):
    pass


class APIServerError(APIError):
    pass


class APIUnavailable(APIError):
    pass


class GitHubError(RegsyncError):
    """The GitHub REST API refused or failed a call (``reconciler.github``)."""

    def __init__(self, message: str, *, status: int = 0):
        super().__init__(message)
        self.status = status
