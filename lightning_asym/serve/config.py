"""The proxy's settings that are not components: limits, auth, where to listen and log."""

from __future__ import annotations

import hmac
import ipaddress
import os
from dataclasses import dataclass

from lightning_asym.errors import UserError


@dataclass
class Limits:
    """What one request may ask for, and how much the proxy takes on at once.

    Each limit is answered with a 4xx in OpenAI's error shape that names the limit; none of
    them is enforced by waiting, so a client never hangs on the proxy.
    """

    max_body_bytes: int = 1_000_000
    """Largest request body (413 beyond it)."""
    max_messages: int = 512
    """Most messages in one request (400 beyond it)."""
    max_tools: int = 128
    """Most tool schemas in one request (400 beyond it)."""
    max_tools_bytes: int = 200_000
    """Largest JSON size of the request's `tools` (400 beyond it)."""
    max_tokens: int = 4096
    """Largest `max_tokens` a client may ask for (400 beyond it)."""
    max_concurrency: int = 32
    """Requests supervised at once; one more is answered 429 with `Retry-After`."""
    retry_after: int = 1
    """Seconds sent in `Retry-After` with a 429."""
    request_timeout: float = 300.0
    """Seconds a whole supervised request may take (upstream calls, reviews, revisions); 504 after."""

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_messages", "max_tools", "max_tools_bytes", "max_tokens"):
            if getattr(self, name) < 1:
                raise UserError(f"limits.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_concurrency < 1:
            raise UserError(f"limits.max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.retry_after < 0:
            raise UserError(f"limits.retry_after must be >= 0, got {self.retry_after}")
        if self.request_timeout <= 0:
            raise UserError(f"limits.request_timeout must be > 0, got {self.request_timeout}")


class BearerAuth:
    """Accepts `Authorization: Bearer <token>` for the tokens listed in an environment variable.

    The variable holds one or more tokens separated by commas or whitespace. It is read once,
    at start; an empty or unset variable refuses to start, so a typo never means an open proxy.
    """

    def __init__(self, env: str) -> None:
        raw = os.environ.get(env, "")
        tokens = [t for t in raw.replace(",", " ").split() if t]
        if not tokens:
            raise UserError(
                f"auth_tokens_env names ${env}, which is unset or empty; export the accepted bearer "
                f"token(s) in it (comma-separated), or set auth_tokens_env: null for no auth."
            )
        self.env = env
        self._tokens = [t.encode() for t in tokens]

    def __repr__(self) -> str:  # never the tokens
        return f"BearerAuth(env={self.env!r}, tokens={len(self._tokens)})"

    def check(self, header: str | None) -> bool:
        """Whether an `Authorization` header value carries an accepted token."""
        if not header or not header[:7].lower() == "bearer ":
            return False
        given = header[7:].strip().encode()
        # compare against every token (constant time each) so timing does not say which matched
        ok = False
        for token in self._tokens:
            ok |= hmac.compare_digest(given, token)
        return ok


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
