"""`lightning-asym serve --config configs/serve/<...>.yaml`: run the supervised proxy.

The config is the arguments of `ProxyServer` in the CLI's YAML style (`class_path`/`init_args`
for the actor and the reviewer); `--print_config` prints the resolved config and `--help` every
key. A `UserError` (a bad value, an unset token variable) prints one line and exits with 2.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from lightning_asym.backends.base import ChatBackend
from lightning_asym.errors import UserError
from lightning_asym.review.base import Reviewer
from lightning_asym.rollout.supervision import SupervisionConfig
from lightning_asym.serve.audit import AuditLog
from lightning_asym.serve.config import BearerAuth, Limits, is_loopback
from lightning_asym.serve.metrics import ServeMetrics
from lightning_asym.serve.proxy import SupervisedProxy, default_sampling

log = logging.getLogger("lightning_asym.serve")


class ProxyServer:
    """An OpenAI-compatible proxy that lets out only reviewer-approved actions.

    Args:
        actor: the upstream actor, an `OpenAIBackend` to any OpenAI-compatible endpoint. Its key
            is read from its `api_key_env`; clients' keys are never forwarded.
        reviewer: any `Reviewer` (`GenerativeCritic`, `RetailRuleCritic`, ...).
        supervision: revision budget and fallback (default: 2 revisions, then `block`, so only
            approved actions ever reach the client; `last`/`first` send an unapproved proposal).
            `privileged` has no effect: requests carry no privileged information.
        limits: request size, message and tool limits, concurrency cap, timeout.
        host: address to bind; 127.0.0.1 (this machine only) unless you mean to expose it.
        port: TCP port.
        model_name: the model `/v1/models` lists (default: the actor's `model`).
        auth_tokens_env: NAME of an environment variable holding the accepted bearer tokens
            (comma-separated); null: no auth (only sensible on 127.0.0.1).
        audit_log: JSONL file every request is appended to (one `Trajectory` per line); null: none.
        audit_fsync: fsync each audit line (survives a power loss, costs a disk sync per request).
        task_data: `Task.data` every review sees (e.g. `{db_seed: 0}` for `RetailRuleCritic`).
        review_concurrency: reviews at once; keep 1 for a local critic model.
        accelerator: Lightning Fabric accelerator for a local critic model.
        precision: Lightning Fabric precision for a local critic model.
        log_level: uvicorn's and the proxy's log level.
    """

    def __init__(
        self,
        actor: ChatBackend,
        reviewer: Reviewer,
        supervision: SupervisionConfig | None = None,
        limits: Limits | None = None,
        host: str = "127.0.0.1",
        port: int = 8100,
        model_name: str | None = None,
        auth_tokens_env: str | None = None,
        audit_log: str | None = "serve_audit.jsonl",
        audit_fsync: bool = False,
        task_data: dict[str, Any] | None = None,
        review_concurrency: int = 1,
        accelerator: str = "auto",
        precision: str = "32-true",
        log_level: str = "info",
    ) -> None:
        if not 0 < port < 65536:
            raise UserError(f"port must be in 1..65535, got {port}")
        if review_concurrency < 1:
            raise UserError(f"review_concurrency must be >= 1, got {review_concurrency}")
        self.limits = limits or Limits()
        self.host, self.port, self.log_level = host, port, log_level
        self.model_name = model_name or str(getattr(actor, "model", "") or "lightning-asym")
        self.auth = BearerAuth(auth_tokens_env) if auth_tokens_env else None
        self.audit = AuditLog(audit_log, fsync=audit_fsync) if audit_log else None
        self.metrics = ServeMetrics()
        self.defaults = default_sampling(actor)
        self.proxy = SupervisedProxy(
            actor,
            reviewer,
            supervision or SupervisionConfig(fallback="block"),
            self.metrics,
            task_data=task_data,
            review_concurrency=review_concurrency,
            accelerator=accelerator,
            precision=precision,
        )
        slots = getattr(actor, "max_concurrency", None)
        if isinstance(slots, int) and slots < self.limits.max_concurrency:
            log.info(
                "actor.init_args.max_concurrency (%d) < limits.max_concurrency (%d): requests beyond it "
                "wait for an upstream slot",
                slots,
                self.limits.max_concurrency,
            )

    def app(self) -> Any:
        from lightning_asym.serve.app import build_app

        return build_app(
            self.proxy,
            model_name=self.model_name,
            limits=self.limits,
            defaults=self.defaults,
            auth=self.auth,
            audit=self.audit,
        )

    def run(self) -> None:
        """Serve until interrupted (Ctrl-C finishes admitted requests, then exits)."""
        import uvicorn

        if not is_loopback(self.host) and self.auth is None:
            log.warning(
                "serving on %s without auth: anyone who can reach this port can use the upstream "
                "actor; set auth_tokens_env",
                self.host,
            )
        log.info(
            "supervised proxy for %s on http://%s:%d/v1 (audit log: %s)",
            self.model_name,
            self.host,
            self.port,
            self.audit.path if self.audit else "off",
        )
        uvicorn.run(
            self.app(),
            host=self.host,
            port=self.port,
            log_level=self.log_level,
            server_header=False,
            timeout_graceful_shutdown=int(self.limits.request_timeout) + 5,
        )


def build_parser() -> Any:
    from jsonargparse import ActionConfigFile, ArgumentParser

    import lightning_asym.backends  # noqa: F401  (short class_path names)
    import lightning_asym.review  # noqa: F401

    parser = ArgumentParser(
        prog="lightning-asym serve",
        description="An OpenAI-compatible proxy that lets out only reviewer-approved actions.",
        env_prefix="LIGHTNING_ASYM_SERVE",
        default_env=False,
    )
    parser.add_argument("--config", action=ActionConfigFile, help="A YAML config (configs/serve/*.yaml).")
    parser.add_class_arguments(ProxyServer, fail_untyped=True, sub_configs=True)
    return parser


def make_server(args: list[str]) -> ProxyServer:
    """Parse `args` (as after `lightning-asym serve`) and build the server without running it."""
    parser = build_parser()
    cfg = parser.parse_args(args)
    init = parser.instantiate_classes(cfg)
    kwargs = {k: v for k, v in dict(init).items() if k != "config"}
    return ProxyServer(**kwargs)


def main(args: list[str] | None = None) -> None:
    """Entry point of `lightning-asym serve`."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        server = make_server(sys.argv[1:] if args is None else args)
        server.run()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
