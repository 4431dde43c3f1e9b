"""`lightning-asym serve`: an OpenAI-compatible proxy that lets out only reviewer-approved actions.

`cli` (the `ProxyServer` config and the verb), `app` (FastAPI routes), `proxy` (one request as
one supervised turn via the rollout room's `supervise_step`), `wire` (OpenAI's request, response
and error JSON), `config` (limits, bearer auth), `metrics` (Prometheus text), `audit` (JSONL of
`Trajectory` lines). Importing this package does not import FastAPI; `app` does.
"""

from lightning_asym.serve.audit import AuditLog
from lightning_asym.serve.config import BearerAuth, Limits
from lightning_asym.serve.metrics import ServeMetrics
from lightning_asym.serve.proxy import Outcome, SupervisedProxy, conversation_key

__all__ = [
    "AuditLog",
    "BearerAuth",
    "Limits",
    "Outcome",
    "ServeMetrics",
    "SupervisedProxy",
    "conversation_key",
]
