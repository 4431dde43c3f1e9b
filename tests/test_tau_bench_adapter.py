"""TauBenchEnv against a stand-in `tau_bench` package shaped like τ-bench's own (always runs).

The stand-in mirrors what the adapter relies on: `get_env(..., task_index)`, an env with
`tasks`, `wiki`, `tools_info`, `user` (reset/step/get_total_cost), `reset(task_index)`,
`step(Action)`, `calculate_reward()` and `get_data_hash()`. `test_tau_bench_real.py` runs the
same adapter against the real τ-bench.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from typing import Any

import pytest

from lightning_asym.envs import make_env
from lightning_asym.envs.tau_bench import TauBenchEnv, TauScriptedUser
from lightning_asym.envs.tau_bench.users import UserBridge
from lightning_asym.envs.users import STOP
from lightning_asym.rollout.engine import RolloutEngine
from lightning_asym.types import Action, Task


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


class AddTool:
    """τ-bench's tool shape: `invoke(data, **kwargs)` changes the data in place."""

    @staticmethod
    def invoke(data, n):
        if not isinstance(n, int):
            raise TypeError("n must be an int")
        data["total"] += n
        return str(data["total"])


class FakeTauEnv:
    """A counter domain: `add(n)` adds to a total; the gold total and the outputs decide the reward."""

    tools_map = {"add": AddTool}
    terminate_tools: list[str] = []

    @staticmethod
    def data_load_func():
        return {"total": 0}

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
    made: list[dict[str, Any]] = []

    def __init__(self, env_name, user_strategy, user_model, task_split, user_provider=None, task_index=None):
        if task_index is None:
            raise AssertionError(
                "get_env called without task_index (τ-bench would draw an inclusive randint)"
            )
        if user_strategy != "human":
            raise AssertionError("listing must not build an LLM user")
        self.tasks = [
            FakeTask("u1", [FakeAction("add", {"n": 2})], "Ask to add 2.", ["2"]),
            FakeTask("u2", [FakeAction("add", {"n": 5})], "Ask to add 5.", []),
        ]
        self.user = None
        FakeTauEnv.made.append(dict(split=task_split, env_name=env_name))

    def reset(self, task_index=None):
        self.task, self.data, self.actions = self.tasks[task_index], self.data_load_func(), []
        return types.SimpleNamespace(observation=self.user.reset(instruction=self.task.instruction), info={})

    def step(self, action):
        self.actions.append(action)
        reward, done, info = 0.0, False, types.SimpleNamespace(reward_info=None)
        if action.name == "respond":
            obs = self.user.step(action.kwargs["content"])
            done = STOP in obs
        elif action.name in self.tools_map:
            obs = self.tools_map[action.name].invoke(self.data, **action.kwargs)
        else:
            obs = f"Unknown action {action.name}"
        if done:
            res = self.calculate_reward()
            reward, info.reward_info = res.reward, res
        return types.SimpleNamespace(observation=obs, reward=reward, done=done, info=info)


@pytest.fixture
def fake_tau_bench(monkeypatch):
    pkg = types.ModuleType("tau_bench")
    envs = types.ModuleType("tau_bench.envs")
    tb_types = types.ModuleType("tau_bench.types")
    envs.get_env = lambda **kw: FakeTauEnv(**kw)
    tb_types.Action = FakeAction
    pkg.envs, pkg.types = envs, tb_types
    for name, mod in [("tau_bench", pkg), ("tau_bench.envs", envs), ("tau_bench.types", tb_types)]:
        monkeypatch.setitem(sys.modules, name, mod)
    FakeTauEnv.made = []
    return pkg


class CountingUser:
    """Stops after two agent replies."""

    def reset(self, task: Task, seed: int = 0) -> str:
        self.replies = 0
        return "Please add a number."

    def respond(self, agent_text: str) -> str:
        self.replies += 1
        return f"Thanks {STOP}" if self.replies >= 2 else "Go on."


def test_missing_package_gives_install_hint(monkeypatch):
    for name in ["tau_bench", *[m for m in sys.modules if m.startswith("tau_bench.")]]:
        monkeypatch.setitem(
            sys.modules, name, None
        )  # makes `import tau_bench...` fail, even if imported before
    env = make_env("tau_bench")
    with pytest.raises(ImportError, match="tau-bench is not installed.*pip install --no-deps -e"):
        env.tasks("test")


def test_tasks_and_schemas_per_domain_split_map(fake_tau_bench):
    env = TauBenchEnv(env_name="retail", user_model="m")  # the default LLM user is never built to list
    tasks = env.tasks("test")
    assert [t.id for t in tasks] == ["tau_bench-retail-test-0000", "tau_bench-retail-test-0001"]
    assert tasks[0].gold_actions == [Action("add", {"n": 2})] and tasks[0].required_outputs == ["2"]
    assert tasks[0].instruction == "Ask to add 2." and "add(" in tasks[0].privileged
    env.tasks("validation")
    assert [m["split"] for m in FakeTauEnv.made] == ["test", "dev"]
    assert env.tool_schemas[0]["function"]["name"] == "add"
    assert env.review_examples() == ()  # retail's examples call tools this retail does not have
    with pytest.raises(ValueError, match="no split 'nope'"):
        env.tasks("nope")
    airline = TauBenchEnv(env_name="airline")
    assert airline.splits == {"test": "test"}
    with pytest.raises(ValueError, match="airline.*no split 'train'.*test split only"):
        airline.tasks("train")
    assert any("add" in text for text in airline.corpus(2))  # the corpus falls back to the test split
    with pytest.raises(ValueError, match="no split map"):
        TauBenchEnv(env_name="banking")


def test_bad_user_is_refused():
    with pytest.raises(ValueError, match="user must be one of"):
        TauBenchEnv(user="gpt")
    with pytest.raises(ValueError, match="no reset"):
        TauBenchEnv(user=object())  # type: ignore[arg-type]


def test_episode_reward_info_is_structured(fake_tau_bench):
    env = TauBenchEnv(user=CountingUser())
    task = env.tasks("test")[0]
    e = env.fork()
    msgs = e.reset(task)
    assert [m.role for m in msgs] == ["system", "user"] and msgs[0].content == FakeTauEnv.wiki
    assert isinstance(e._env.user, UserBridge)
    r = e.step(Action("add", {"n": 2}))
    assert r.messages[0].role == "tool" and r.messages[0].content == "2" and not r.done
    assert e.step(Action.reply("The total is 2.")).messages[0].content == "Go on."
    r = e.step(Action.reply("Done: 2."))
    assert r.done and r.reward == 1.0 and r.info["success"] and r.messages[0].content == "Thanks"
    assert r.info["reward_info"] == {"reward": 1.0, "db_match": True, "outputs": {"2": True}}
    assert e.step(Action.reply("more?")).info["error"]
    # forks get their own τ-bench env, so episodes do not share state
    f = env.fork()
    f.reset(task)
    assert f._env is not e._env and f._env.user is not e._env.user
    f.step(Action("add", {"n": 3}))
    f.step(Action.reply("x"))
    r = f.step(Action.reply("total 5"))
    assert r.done and r.reward == 0.0 and r.info["success"] is False
    assert r.info["reward_info"] == {"reward": 0.0, "db_match": False, "outputs": {"2": False}}


def test_errors_never_raise_and_the_cut_is_a_truncation(fake_tau_bench):
    env = TauBenchEnv(max_turns=4, user="scripted")
    e = env.fork()
    assert e.step(Action.reply("hi")).info["error"]  # before reset
    e.reset(env.tasks("test")[1])
    r = e.step(Action("add", {"n": "two"}))  # the stand-in raises
    assert r.info["error"] and r.messages[0].content.startswith("Error:") and not r.done
    r = e.step(Action("subtract", {}))
    assert "Unknown action" in r.info["error"]
    assert e.step(None).info["error"]  # type: ignore[arg-type]
    r = e.step(Action("add", {"n": 5}))
    # done means the conversation ended; a cut is reported as truncated and left to the engine
    assert not r.done and r.info["truncated"] and r.info["success"] is False


def test_engine_records_a_cut_episode_as_truncated(fake_tau_bench):
    from lightning_asym.backends.scripted import ScriptedBackend

    env = TauBenchEnv(max_turns=3, user="scripted")
    actor = ScriptedBackend(responses=['<tool_call>\n{"name": "add", "arguments": {"n": 1}}\n</tool_call>'])
    (traj,) = RolloutEngine(env).collect(env.tasks("test")[:1], actor)
    assert len(traj.turns) == 3 and traj.truncated and not traj.success


def test_scripted_user_confirms_then_stops():
    u = TauScriptedUser(max_confirmations=1)
    task = Task(id="t", split="test", instruction="You are Ann; cancel order #1.")
    assert "You are Ann" in u.reset(task)
    assert u.respond("I will cancel order #1. Shall I proceed?") == "Yes, please go ahead."
    assert STOP in u.respond("Should I also cancel #2? Please confirm.")  # out of yeses
    u.reset(task)
    assert STOP in u.respond("Your order is cancelled.")
