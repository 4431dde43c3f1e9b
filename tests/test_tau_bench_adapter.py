"""TauBenchEnv against a stand-in `tau_bench` package that follows tau-bench's documented API."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from typing import Any

import pytest

from lightning_asym.envs import make_env
from lightning_asym.envs.tau_bench import TauBenchEnv
from lightning_asym.types import Action


@dataclass
class FakeAction:
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeTask:
    user_id: str
    actions: list[FakeAction]
    instruction: str
    outputs: list[str]


class FakeTauEnv:
    """A counter domain: `add(n)` adds to a total; the user stops after two replies."""

    wiki = "Add what the user asks, then tell them the total."
    tools_info = [
        {
            "type": "function",
            "function": {
                "name": "add",
                "description": "add n",
                "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
            },
        }
    ]
    made: list[FakeTauEnv] = []

    def __init__(self, env_name, user_strategy, user_model, task_split, user_provider=None):
        self.split = task_split
        self.tasks = [
            FakeTask("u1", [FakeAction("add", {"n": 2})], "Ask to add 2.", ["2"]),
            FakeTask("u2", [FakeAction("add", {"n": 5})], "Ask to add 5.", []),
        ]
        self.kwargs = dict(env_name=env_name, user_strategy=user_strategy, user_model=user_model)
        FakeTauEnv.made.append(self)

    def reset(self, task_index=None):
        self.task, self.total, self.replies, self.said = self.tasks[task_index], 0, 0, []
        return types.SimpleNamespace(observation="Please add a number.", info={"source": "user"})

    def step(self, action):
        reward, done = 0.0, False
        if action.name == "respond":
            self.replies += 1
            self.said.append(action.kwargs["content"])
            obs = "Thanks ###STOP###" if self.replies >= 2 else "Go on."
            done = "###STOP###" in obs
        elif action.name == "add":
            if not isinstance(action.kwargs.get("n"), int):
                raise TypeError("n must be an int")
            self.total += action.kwargs["n"]
            obs = str(self.total)
        else:
            obs = f"Unknown action {action.name}"
        if done:
            gold = sum(a.kwargs["n"] for a in self.task.actions)
            outputs_ok = all(any(o in s for s in self.said) for o in self.task.outputs)
            reward = float(self.total == gold and outputs_ok)
        return types.SimpleNamespace(
            observation=obs, reward=reward, done=done, info=types.SimpleNamespace(reward_info={"r": reward})
        )


@pytest.fixture
def fake_tau_bench(monkeypatch):
    pkg = types.ModuleType("tau_bench")
    envs = types.ModuleType("tau_bench.envs")
    tb_types = types.ModuleType("tau_bench.types")
    envs.get_env = lambda **kw: FakeTauEnv(**kw)
    tb_types.Action = FakeAction
    tb_types.RESPOND_ACTION_NAME = "respond"
    pkg.envs, pkg.types = envs, tb_types
    for name, mod in [("tau_bench", pkg), ("tau_bench.envs", envs), ("tau_bench.types", tb_types)]:
        monkeypatch.setitem(sys.modules, name, mod)
    FakeTauEnv.made = []
    return pkg


def test_missing_package_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "tau_bench", None)  # makes `import tau_bench` fail
    env = make_env("tau_bench")
    with pytest.raises(ImportError, match="pip install"):
        env.tasks("test")


def test_tasks_and_schemas(fake_tau_bench):
    env = TauBenchEnv(env_name="retail", user_model="m")
    tasks = env.tasks("test")
    assert [t.id for t in tasks] == ["tau_bench-retail-test-0000", "tau_bench-retail-test-0001"]
    assert tasks[0].gold_actions == [Action("add", {"n": 2})] and tasks[0].required_outputs == ["2"]
    assert tasks[0].instruction == "Ask to add 2." and "add(" in tasks[0].privileged
    env.tasks("validation")
    assert {e.split for e in FakeTauEnv.made} == {"test", "dev"}
    assert env.tool_schemas[0]["function"]["name"] == "add"
    with pytest.raises(ValueError):
        env.tasks("nope")


def test_episode_success_and_failure(fake_tau_bench):
    env = TauBenchEnv()
    task = env.tasks("test")[0]
    e = env.fork()
    msgs = e.reset(task)
    assert [m.role for m in msgs] == ["system", "user"] and msgs[0].content == FakeTauEnv.wiki
    r = e.step(Action("add", {"n": 2}))
    assert r.messages[0].role == "tool" and r.messages[0].content == "2" and not r.done
    assert e.step(Action.reply("The total is 2.")).messages[0].content == "Go on."
    r = e.step(Action.reply("Done: 2."))
    assert r.done and r.reward == 1.0 and r.info["success"] and r.messages[0].content == "Thanks"
    assert e.step(Action.reply("more?")).info["error"]
    # forks get their own tau-bench env, so episodes do not share state
    f = env.fork()
    f.reset(task)
    assert f._env is not e._env
    f.step(Action("add", {"n": 3}))
    f.step(Action.reply("x"))
    r = f.step(Action.reply("total 5"))
    assert r.done and r.reward == 0.0 and r.info["success"] is False


def test_errors_never_raise(fake_tau_bench):
    env = TauBenchEnv(max_turns=4)
    e = env.fork()
    assert e.step(Action.reply("hi")).info["error"]  # before reset
    e.reset(env.tasks("test")[1])
    r = e.step(Action("add", {"n": "two"}))  # the stand-in raises
    assert r.info["error"] and r.messages[0].content.startswith("Error:") and not r.done
    r = e.step(Action("subtract", {}))
    assert "Unknown action" in r.info["error"]
    assert e.step(None).info["error"]  # type: ignore[arg-type]
    r = e.step(Action("add", {"n": 5}))
    assert r.done and r.info["truncated"] and r.info["success"] is False
