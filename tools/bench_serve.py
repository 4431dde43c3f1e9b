"""The supervised proxy under bounded load on loopback: direct to a fake upstream vs through the proxy.

Four local processes: two fake upstreams (`python -m lightning_asym.serve.testing`; one fails a
fraction of requests with HTTP 500) and two proxies started by the real verb (`python -m
lightning_asym.cli serve --config configs/serve/retail_rule_critic.yaml` with overrides) with the
no-op reviewer `ApproveAll` and no upstream retries. All traffic goes to 127.0.0.1 and every
request has a timeout, so the run is bounded in count and time. Phases, in one run:

1. overhead: one client, requests alternating direct / through the proxy (so drift in the
   machine's load hits both alike); p50 overhead = p50(proxy) - p50(direct).
2. load: `--clients` concurrent clients x `--requests` each, first direct, then through the proxy:
   requests/s, p50/p99 latency, errors, overhead ratio (proxy p50 / direct p50).
3. fault: the same load through the proxy whose upstream fails `--fault-rate` of requests: each
   request must get exactly one well-formed answer (200 with the approved reply, or 502 in
   OpenAI's error shape), and the audit log must hold each request id exactly once.

    python tools/bench_serve.py [--clients 100] [--requests 20] [--overhead-requests 300]

Last line: one JSON object of figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "serve" / "retail_rule_critic.yaml"
BODY = json.dumps(
    {"model": "fake", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 16}
).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"a helper process exited with {proc.returncode}: {proc.args}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.25)
    raise SystemExit(f"nothing listened on 127.0.0.1:{port} within {timeout} s: {proc.args}")


def start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    out = log.open("w")
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


class Client:
    """One keep-alive HTTP/1.1 connection; `post` returns (status, seconds, parsed, request id)."""

    def __init__(self, port: int, path: str) -> None:
        self.port, self.path = port, path
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self) -> tuple[int, float, Any, str | None]:
        t0 = time.perf_counter()
        try:
            self.conn.request("POST", self.path, BODY, {"Content-Type": "application/json"})
            r = self.conn.getresponse()
            raw = r.read()
            status, rid = r.status, r.getheader("x-request-id")
        except (OSError, http.client.HTTPException) as e:
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            return -1, time.perf_counter() - t0, repr(e), None
        dt = time.perf_counter() - t0
        try:
            return status, dt, json.loads(raw), rid
        except json.JSONDecodeError:
            return status, dt, raw[:200].decode(errors="replace"), rid


def well_formed(status: int, body: Any, through_proxy: bool) -> bool:
    if status == 200:
        ok = isinstance(body, dict) and body.get("choices", [{}])[0].get("message", {}).get("content") == "ok"
        return ok and (not through_proxy or body.get("supervision", {}).get("request_id") == body.get("id"))
    if status in (500, 502):
        return isinstance(body, dict) and bool(body.get("error", {}).get("message"))
    return False


def load(port: int, path: str, clients: int, requests: int, through_proxy: bool) -> dict[str, Any]:
    """`clients` threads x `requests` each; every answer is checked and its id kept."""
    results: list[list[tuple[int, float, bool, str | None]]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def run(i: int) -> None:
        c = Client(port, path)
        barrier.wait()
        for _ in range(requests):
            status, dt, body, rid = c.post()
            if through_proxy and status == 200 and isinstance(body, dict):
                rid = body.get("id")
            results[i].append((status, dt, well_formed(status, body, through_proxy), rid))
        c.conn.close()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(timeout=600)
    wall = time.perf_counter() - t0
    flat = [r for rs in results for r in rs]
    lat = sorted(r[1] for r in flat)
    statuses: dict[str, int] = {}
    for r in flat:
        statuses[str(r[0])] = statuses.get(str(r[0]), 0) + 1
    return {
        "requests": len(flat),
        "rps": round(len(flat) / wall, 1),
        "p50_ms": round(1000 * lat[len(lat) // 2], 2),
        "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 2),
        "statuses": statuses,
        "malformed": sum(not r[2] for r in flat),
        "ids": [r[3] for r in flat],
    }


def overhead(up_port: int, proxy_port: int, n: int) -> tuple[dict[str, float], list[str | None]]:
    """One client alternating direct and proxied requests; returns figures and the proxy's ids."""
    direct, proxied = Client(up_port, "/v1/chat/completions"), Client(proxy_port, "/v1/chat/completions")
    d, p, ids = [], [], []
    for _ in range(n):
        d.append(direct.post()[1])
        status, dt, body, rid = proxied.post()
        p.append(dt)
        ids.append(body.get("id") if isinstance(body, dict) and status == 200 else rid)
    d50, p50 = statistics.median(d), statistics.median(p)
    figures = {
        "single_direct_p50_ms": round(1000 * d50, 3),
        "single_proxy_p50_ms": round(1000 * p50, 3),
        "overhead_p50_ms": round(1000 * (p50 - d50), 3),
    }
    return figures, ids


def audit_check(path: Path, ids: list[str | None]) -> dict[str, Any]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    logged = [rec["info"]["request_id"] for rec in lines]
    return {
        "audit_lines": len(lines),
        "audit_duplicates": len(logged) - len(set(logged)),
        "audit_missing": len({i for i in ids if i} - set(logged)),
        "responses_without_id": sum(i is None for i in ids),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--requests", type=int, default=20, help="per client, per phase")
    p.add_argument("--overhead-requests", type=int, default=300)
    p.add_argument("--fault-rate", type=float, default=0.2)
    p.add_argument("--startup-timeout", type=float, default=300)
    a = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    ports = {k: free_port() for k in ("up", "up_faulty", "proxy", "proxy_faulty")}
    py = sys.executable
    procs = [
        start([py, "-m", "lightning_asym.serve.testing", "--port", str(ports["up"])], tmp / "up.log"),
        start(
            [py, "-m", "lightning_asym.serve.testing", "--port", str(ports["up_faulty"])]
            + ["--fail-rate", str(a.fault_rate)],
            tmp / "up_faulty.log",
        ),
    ]
    for name, up in (("proxy", "up"), ("proxy_faulty", "up_faulty")):
        args = [py, "-m", "lightning_asym.cli", "serve", "--config", str(CONFIG)]
        args += [
            f"--actor.init_args.base_url=http://127.0.0.1:{ports[up]}/v1",
            "--actor.init_args.max_retries=0",
        ]
        args += [
            f"--actor.init_args.max_concurrency={a.clients + 28}",
            f"--limits.max_concurrency={a.clients + 28}",
        ]
        args += ["--reviewer=lightning_asym.serve.testing.ApproveAll", f"--port={ports[name]}"]
        args += [f"--audit_log={tmp / (name + '.jsonl')}", "--log_level=warning"]
        procs.append(start(args, tmp / f"{name}.log"))
    try:
        for name, proc in zip(("up", "up_faulty", "proxy", "proxy_faulty"), procs):
            wait_port(ports[name], proc, a.startup_timeout)
        path = "/v1/chat/completions"
        for port in (ports["up"], ports["proxy"], ports["proxy_faulty"]):  # warm-up: clients, pools
            load(port, path, 4, 5, through_proxy=port != ports["up"])
        for f in ("proxy.jsonl", "proxy_faulty.jsonl"):
            (tmp / f).write_text("")  # forget the warm-up (the proxies append to the same inode)
        over, over_ids = overhead(ports["up"], ports["proxy"], a.overhead_requests)
        direct = load(ports["up"], path, a.clients, a.requests, through_proxy=False)
        proxied = load(ports["proxy"], path, a.clients, a.requests, through_proxy=True)
        fault = load(ports["proxy_faulty"], path, a.clients, a.requests, through_proxy=True)
        time.sleep(0.5)
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    audit_ok = audit_check(tmp / "proxy.jsonl", over_ids + proxied["ids"])
    audit_fault = audit_check(tmp / "proxy_faulty.jsonl", fault["ids"])
    expected = a.clients * a.requests
    figures: dict[str, Any] = {
        "clients": a.clients,
        "requests_per_client": a.requests,
        **over,
        "direct_rps": direct["rps"],
        "direct_p50_ms": direct["p50_ms"],
        "direct_p99_ms": direct["p99_ms"],
        "proxy_rps": proxied["rps"],
        "proxy_p50_ms": proxied["p50_ms"],
        "proxy_p99_ms": proxied["p99_ms"],
        "load_overhead_ratio_p50": round(proxied["p50_ms"] / direct["p50_ms"], 2),
        "proxy_statuses": proxied["statuses"],
        "proxy_errors": expected - proxied["statuses"].get("200", 0),
        "fault_rate": a.fault_rate,
        "fault_statuses": fault["statuses"],
        "fault_malformed": fault["malformed"] + proxied["malformed"] + direct["malformed"],
        "fault_answered": fault["requests"] == expected and set(fault["statuses"]) <= {"200", "502"},
        "audit": {
            "load": {**audit_ok, "requests": proxied["requests"] + a.overhead_requests},
            "fault": {**audit_fault, "requests": fault["requests"]},
        },
    }
    figures["targets_met"] = {
        "overhead_p50_le_5ms": figures["overhead_p50_ms"] <= 5.0,
        "clients_without_error": figures["proxy_errors"] == 0,
        "one_answer_each": figures["fault_answered"] and figures["fault_malformed"] == 0,
        "audit_exact": all(
            v["audit_lines"] == v["requests"] and v["audit_duplicates"] == 0 and v["audit_missing"] == 0
            for v in figures["audit"].values()
        ),
    }
    print(f"logs and audit files: {tmp}", file=sys.stderr)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
