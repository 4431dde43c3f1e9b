"""Errors meant for the person running `lightning-asym`, not for a traceback.

A `UserError` carries a one-line message that says what was wrong and what to do, naming
the config key to change. `lightning_asym.cli.main` prints it as `error: <message>` on
stderr and exits with status 2. This module imports nothing of the package, so any room
may raise these.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can fix (a config value, a server to start); its message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))

    @property
    def message(self) -> str:
        return str(self.args[0])


class EndpointError(UserError):
    """An OpenAI-compatible endpoint could not be reached or refused the request."""
