from __future__ import annotations

import pytest

from lightning_asym.types import (
    Action,
    JSONLError,
    Message,
    Proposal,
    Review,
    Task,
    ToolCall,
    Trajectory,
    Turn,
    read_jsonl,
    write_jsonl,
)


def _trajectory() -> Trajectory:
    call = ToolCall("search", {"aspect": "hotel", "nested": {"a": [1, 2.5, None]}}, "call_0")
    return Trajectory(
        task_id="t-1",
        split="test",
        messages=[
            Message("system", "policy"),
            Message("user", "hi ünïcode ✓"),
            Message("assistant", "<tool_call>...</tool_call>", tool_calls=[call]),
            Message("tool", '{"ok": true}', tool_call_id="call_0"),
        ],
        turns=[
            Turn(
                index=0,
                text="<tool_call>...</tool_call>",
                action=Action("search", {"aspect": "hotel"}),
                observation=[Message("tool", '{"ok": true}', tool_call_id="call_0")],
                reward=0.5,
                done=True,
                info={"success": True, "error": None},
                proposals=[Proposal("x", None, "bad json", Review("revise", "fix it", 0.1), 3)],
                prompt_ids=[1, 2, 3],
                completion_ids=[4, 5],
                logprobs=[-0.5, -1.25],
            )
        ],
        reward=0.5,
        success=True,
        seed=7,
        trial=2,
        info={"actor_tokens": 2},
    )


def test_trajectory_jsonl_round_trip(tmp_path):
    path = tmp_path / "traj.jsonl"
    traj = _trajectory()
    write_jsonl(path, [traj, traj])
    back = read_jsonl(path, Trajectory)
    assert len(back) == 2
    assert back[0] == traj


def test_task_round_trip_and_append(tmp_path):
    path = tmp_path / "tasks.jsonl"
    t = Task(
        "a", "train", "find a hotel", [Action("search", {"aspect": "hotel"})], ["42"], "secret", {"k": 1}
    )
    write_jsonl(path, [t])
    write_jsonl(path, [t])  # appends, never truncates
    assert read_jsonl(path, Task) == [t, t]


def test_corrupt_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    write_jsonl(path, [_trajectory()])
    with path.open("a") as f:
        f.write("\n{not json\n")
    with pytest.raises(JSONLError, match=r"bad\.jsonl:3: not a valid Trajectory line"):
        read_jsonl(path, Trajectory)


def test_unknown_field_is_an_error(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"task_id": "a", "bogus": 1}\n')
    with pytest.raises(JSONLError, match=r"x\.jsonl:1: .*bogus"):
        read_jsonl(path, Trajectory)


def test_message_openai_round_trip():
    m = Message("assistant", None, tool_calls=[ToolCall("f", {"x": 1}, "id1")])
    d = m.to_openai()
    assert d["tool_calls"][0]["function"]["arguments"] == '{"x": 1}'
    assert Message.from_openai(d) == m


def test_action_reply_and_message():
    a = Action.reply("hello")
    assert a.is_reply and a.content == "hello"
    assert a.to_message().content == "hello"
    call = Action("search", {"aspect": "car"}).to_message("c9")
    assert call.tool_calls == [ToolCall("search", {"aspect": "car"}, "c9")]
