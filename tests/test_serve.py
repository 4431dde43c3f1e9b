"""The supervised proxy's API against a stdlib fake upstream on loopback: approve, revise then
approve, fallbacks, native tool calls, streaming, models/health/metrics, the conversation key,
the audit log, and an unmodified OpenAI-client agent loop that only changes `base_url`."""

from __future__ import annotations

import json

import openai
import pytest
from serve_helpers import USER, RecordingReviewer, call, chat, make_server, running

from lightning_asym.rollout.supervision import SupervisionConfig
from lightning_asym.serve.testing import FakeUpstream, Reply, chat_reply, tool_reply
from lightning_asym.types import REVISION_PREFIX, Trajectory, read_jsonl

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}


def revising_upstream(body: dict) -> Reply:
    """Says something BAD first; after critic feedback, something good."""
    last = body["messages"][-1]
    if last["role"] == "user" and str(last["content"]).startswith(REVISION_PREFIX):
        return chat_reply("a good answer")
    return chat_reply("a BAD answer")


def test_approved_reply_goes_out_with_a_summary_and_an_audit_line(tmp_path):
    with FakeUpstream() as up, running(make_server(up, tmp_path)) as base:
        status, headers, body = chat(base, USER)
        on_disk = (tmp_path / "audit.jsonl").read_text()  # written and flushed before the response
    assert status == 200, body
    assert body["id"] in on_disk and on_disk.endswith("\n")
    assert body["object"] == "chat.completion"
    (choice,) = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": "ok", "refusal": None}
    assert choice["finish_reason"] == "stop"
    summary = body["supervision"]
    assert summary["proposals"] == 1 and summary["verdicts"] == ["approve"] and summary["revisions"] == 0
    assert summary["fallback"] is None
    assert headers["x-supervision"] == "proposals=1; verdicts=approve; revisions=0; fallback=none"
    assert headers["x-conversation-id"] == summary["conversation_key"]
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    (traj,) = read_jsonl(tmp_path / "audit.jsonl", Trajectory)
    assert traj.info["request_id"] == body["id"] == headers["x-request-id"]
    assert traj.info["status"] == "ok" and traj.info["http_status"] == 200
    assert [m.role for m in traj.messages] == ["system", "user", "assistant"]
    assert traj.turns[0].action.content == "ok" and len(traj.turns[0].proposals) == 1
    assert traj.state_boundaries() == [2, 3]


def test_revise_then_approve_sends_feedback_upstream_and_only_the_revision_out(tmp_path):
    reviewer = RecordingReviewer()
    with FakeUpstream(revising_upstream) as up, running(make_server(up, tmp_path, reviewer)) as base:
        status, headers, body = chat(base, USER)
        _, _, metrics = call(f"{base}/metrics")
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == "a good answer"
    assert body["supervision"]["verdicts"] == ["revise", "approve"] and body["supervision"]["revisions"] == 1
    assert headers["x-supervision"] == "proposals=2; verdicts=revise,approve; revisions=1; fallback=none"
    assert len(up.requests) == 2
    revision = up.requests[1]["messages"]
    assert revision[-2] == {"role": "assistant", "content": "a BAD answer"}
    assert revision[-1]["content"] == f"{REVISION_PREFIX} do not say BAD things"
    assert body["usage"]["completion_tokens"] == 6  # both upstream calls are paid for
    (traj,) = read_jsonl(tmp_path / "audit.jsonl", Trajectory)
    texts = [(p.text, p.review.verdict, p.review.feedback) for p in traj.turns[0].proposals]
    assert texts == [("a BAD answer", "revise", "do not say BAD things"), ("a good answer", "approve", "")]
    assert traj.messages[-1].content == "a good answer"
    assert "lightning_asym_serve_revisions_total 1" in metrics
    assert 'lightning_asym_serve_verdicts_total{verdict="revise"} 1' in metrics
    assert 'lightning_asym_serve_verdicts_total{verdict="approve"} 1' in metrics


@pytest.mark.parametrize(
    ("fallback", "want"),
    [("block", "Hold on, let me check."), ("last", "BAD 3"), ("first", "BAD 1")],
)
def test_fallback_when_the_revision_budget_is_spent(tmp_path, fallback, want):
    count = iter(range(1, 100))

    def always_bad(body):
        return chat_reply(f"BAD {next(count)}")

    config = SupervisionConfig(max_revisions=2, fallback=fallback, block_message="Hold on, let me check.")
    with FakeUpstream(always_bad) as up:
        server = make_server(up, tmp_path, RecordingReviewer(), supervision=config)
        with running(server) as base:
            status, headers, body = chat(base, USER)
            _, _, metrics = call(f"{base}/metrics")
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == want
    assert body["supervision"]["fallback"] == fallback and body["supervision"]["status"] == "fallback"
    assert body["supervision"]["verdicts"] == ["revise"] * 3
    assert headers["x-supervision"].endswith(f"fallback={fallback}")
    assert "lightning_asym_serve_fallbacks_total 1" in metrics
    (traj,) = read_jsonl(tmp_path / "audit.jsonl", Trajectory)
    assert traj.info["status"] == "fallback" and traj.info["fallback"] == fallback


def test_tool_calls_come_back_in_native_form_and_tool_choice_is_applied(tmp_path):
    with FakeUpstream(lambda body: tool_reply("get_weather", {"city": "Paris"})) as up:
        with running(make_server(up, tmp_path)) as base:
            status, _, body = chat(base, USER, tools=[WEATHER_TOOL, TIME_TOOL])
            chat(base, USER, tools=[WEATHER_TOOL, TIME_TOOL], tool_choice="none")
            chat(
                base,
                USER,
                tools=[WEATHER_TOOL, TIME_TOOL],
                tool_choice={"type": "function", "function": {"name": "get_time"}},
            )
            bad, _, err = chat(
                base,
                USER,
                tools=[WEATHER_TOOL],
                tool_choice={"type": "function", "function": {"name": "nope"}},
            )
    assert status == 200, body
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (tc,) = choice["message"]["tool_calls"]
    assert tc["type"] == "function" and tc["id"].startswith("call_")
    assert tc["function"]["name"] == "get_weather" and json.loads(tc["function"]["arguments"]) == {
        "city": "Paris"
    }
    assert [len(r.get("tools", [])) for r in up.requests] == [2, 0, 1]
    assert up.requests[2]["tools"][0]["function"]["name"] == "get_time"
    assert bad == 400 and err["error"]["param"] == "tool_choice"


def sse_events(text: str) -> list[dict]:
    blocks = [b for b in text.split("\n\n") if b.strip()]
    assert all(b.startswith("data: ") for b in blocks), text
    assert blocks[-1] == "data: [DONE]"
    return [json.loads(b[6:]) for b in blocks[:-1]]


def test_stream_is_server_sent_events_of_the_approved_message(tmp_path):
    long_good = ("a good answer " * 12).strip()

    def upstream(body):
        last = body["messages"][-1]
        return chat_reply(long_good if str(last["content"]).startswith(REVISION_PREFIX) else "a BAD answer")

    with FakeUpstream(upstream) as up, running(make_server(up, tmp_path, RecordingReviewer())) as base:
        status, headers, text = chat(base, USER, stream=True)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused")
        pieces = list(client.chat.completions.create(model="fake-model", messages=USER, stream=True))
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = sse_events(text)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(e["object"] == "chat.completion.chunk" and e["id"] == events[0]["id"] for e in events)
    content = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    assert content == long_good and "BAD" not in text.split('"supervision"')[0]
    assert len(events) > 3  # the content went out in several pieces
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["supervision"]["verdicts"] == ["revise", "approve"]
    assert "".join(p.choices[0].delta.content or "" for p in pieces) == long_good
    assert pieces[-1].choices[0].finish_reason == "stop"


def test_stream_of_a_tool_call(tmp_path):
    with FakeUpstream(lambda body: tool_reply("get_weather", {"city": "Oslo"})) as up:
        with running(make_server(up, tmp_path)) as base:
            client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused")
            chunks = list(
                client.chat.completions.create(model="m", messages=USER, tools=[WEATHER_TOOL], stream=True)
            )
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert [c.function.name for c in calls] == ["get_weather"]
    assert json.loads(calls[0].function.arguments) == {"city": "Oslo"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_models_health_and_prometheus_metrics(tmp_path):
    with FakeUpstream() as up, running(make_server(up, tmp_path, model_name="supervised-smol")) as base:
        _, _, models = call(f"{base}/v1/models")
        health = call(f"{base}/health")
        chat(base, USER)
        status, headers, text = call(f"{base}/metrics")
        missing = call(f"{base}/v1/nope")
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["supervised-smol"]
    assert health[0] == 200 and health[2]["status"] == "ok"
    assert status == 200 and headers["content-type"].startswith("text/plain")
    for name in ("upstream_seconds", "review_seconds", "request_seconds"):
        assert f"# TYPE lightning_asym_serve_{name} histogram" in text
        assert f"lightning_asym_serve_{name}_count 1" in text
        assert f'lightning_asym_serve_{name}_bucket{{le="+Inf"}} 1' in text
    assert 'lightning_asym_serve_requests_total{status="200"} 1' in text
    assert "lightning_asym_serve_reviews_total 1" in text
    assert missing[0] == 404 and missing[2]["error"]["type"] == "not_found_error"


def test_conversation_key_from_the_header_or_the_opening_reaches_the_reviewer(tmp_path):
    reviewer = RecordingReviewer()
    turn2 = [*USER, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "And then?"}]
    other = [USER[0], {"role": "user", "content": "Something else"}]
    with FakeUpstream() as up, running(make_server(up, tmp_path, reviewer)) as base:
        k1 = chat(base, USER)[1]["x-conversation-id"]
        k2 = chat(base, turn2)[1]["x-conversation-id"]
        k3 = chat(base, other)[1]["x-conversation-id"]
        k4 = chat(base, turn2, headers={"X-Conversation-Id": "ticket-77"})[1]["x-conversation-id"]
    assert k1 == k2 != k3 and k4 == "ticket-77"
    if not hasattr(reviewer.requests[0], "key"):
        pytest.skip("ReviewRequest has no `key` field in this checkout")
    assert [r.key for r in reviewer.requests] == [k1, k2, k3, "ticket-77"]
    trajs = read_jsonl(tmp_path / "audit.jsonl", Trajectory)
    assert [t.info["conversation_key"] for t in trajs] == [k1, k2, k3, "ticket-77"]
    assert trajs[1].turns[0].index == 1  # the second assistant turn of that conversation


def agent_loop(client: openai.OpenAI, question: str, tools: dict, schemas: list, max_steps: int = 5) -> str:
    """A plain OpenAI tool-calling agent loop, as in the openai docs; knows nothing of the proxy."""
    messages = [{"role": "user", "content": question}]
    for _ in range(max_steps):
        response = client.chat.completions.create(model="any", messages=messages, tools=schemas)
        msg = response.choices[0].message
        if not msg.tool_calls:
            return msg.content
        messages.append(msg.model_dump(exclude_none=True))
        for tc in msg.tool_calls:
            result = tools[tc.function.name](**json.loads(tc.function.arguments))
            messages.append({"role": "tool", "tool_call_id": tc.id, "content": result})
    raise AssertionError("the agent did not finish")


def test_an_unmodified_openai_agent_loop_runs_through_the_proxy(tmp_path):
    def upstream(body):
        last = body["messages"][-1]
        if last["role"] == "tool":
            return chat_reply(f"It is {last['content']} in Paris.")
        return tool_reply("get_weather", {"city": "Paris"})

    tools = {"get_weather": lambda city: "sunny" if city == "Paris" else "unknown"}
    with FakeUpstream(upstream) as up:
        direct = agent_loop(openai.OpenAI(base_url=up.url, api_key="x"), "Weather?", tools, [WEATHER_TOOL])
        with running(make_server(up, tmp_path)) as base:
            proxied = agent_loop(
                openai.OpenAI(base_url=f"{base}/v1", api_key="x"), "Weather?", tools, [WEATHER_TOOL]
            )
    assert direct == proxied == "It is sunny in Paris."
    # the tool result went upstream answering the call id the proxy gave out
    sent = up.requests[-1]["messages"]
    assert sent[-1]["role"] == "tool" and sent[-1]["tool_call_id"] == sent[-2]["tool_calls"][0]["id"]
    trajs = read_jsonl(tmp_path / "audit.jsonl", Trajectory)
    assert len(trajs) == 2 and trajs[0].info["conversation_key"] == trajs[1].info["conversation_key"]
    assert trajs[0].turns[0].action.name == "get_weather"
