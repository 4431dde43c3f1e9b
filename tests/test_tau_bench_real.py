"""TauBenchEnv against the real τ-bench, offline: listing, resets, gold replay, errors, judgement.

τ-bench is found installed (`make tau-bench`) or in `../shared/tau-bench` beside the
repository; otherwise these tests are skipped with the reason. litellm is not needed: the
adapter imports τ-bench with a stand-in for it, and the users here are ours (no model).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from lightning_asym.envs.retail.policy import AUTHENTICATE_FIRST, KNOWN_TOOLS
from lightning_asym.envs.tau_bench import LITELLM_HINT, TauBenchEnv, TauLLMUser
from lightning_asym.envs.tau_bench.gold import gold_actor
from lightning_asym.envs.tau_bench.loader import import_tau_bench
from lightning_asym.rollout.engine import RolloutEngine
from lightning_asym.types import Action

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "tau-bench"


def _find_tau_bench() -> str | None:
    """None when τ-bench can be imported, else why not (the skip reason)."""
    try:
        import_tau_bench()
        return None
    except ImportError as e:
        if not (SHARED / "tau_bench").is_dir():
            return f"tau-bench is not importable ({e}) and {SHARED} does not exist"
    sys.path.insert(0, str(SHARED))  # the read-only shared copy, as PROVENANCE.md allows
    try:
        import_tau_bench()
        return None
    except ImportError as e:
        return f"tau-bench in {SHARED} does not import: {e}"


REASON = _find_tau_bench()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


def _replay(domain: str, indices: list[int] | None, max_turns: int = 60):
    env = TauBenchEnv(env_name=domain, user="scripted", max_turns=max_turns)
    tasks = env.tasks("test")
    tasks = tasks if indices is None else [tasks[i] for i in indices]
    return RolloutEngine(env).collect(tasks, gold_actor())


def test_listing_needs_no_llm_user_nor_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    retail = TauBenchEnv(env_name="retail", user="llm", user_model="gpt-4o")
    assert [len(retail.tasks(s)) for s in ("train", "validation", "test")] == [500, 20, 115]
    names = {s["function"]["name"] for s in retail.tool_schemas}
    assert {"calculate", "find_user_id_by_name_zip", "exchange_delivered_order_items"} <= names
    airline = TauBenchEnv(env_name="airline", user="llm")
    assert len(airline.tasks("test")) == 50 and len(airline.tool_schemas) == 14
    with pytest.raises(ValueError, match="no split 'train'"):
        airline.tasks("train")


def test_retail_reuses_our_retail_review_examples_because_its_tools_take_them():
    from lightning_asym.envs.retail.examples import REVIEW_EXAMPLES

    assert TauBenchEnv(env_name="retail", user="scripted").review_examples() is REVIEW_EXAMPLES
    assert TauBenchEnv(env_name="airline", user="scripted").review_examples() == ()


def test_resets_never_let_tau_bench_draw_a_task(monkeypatch):
    """τ-bench's `randint(0, len(tasks))` is inclusive; we make it always draw the bad index."""
    base = importlib.import_module("tau_bench.envs.base")
    monkeypatch.setattr(base.random, "randint", lambda a, b: b)  # out of range: IndexError if ever used
    env = TauBenchEnv(env_name="retail", user="scripted")
    tasks = env.tasks("test")
    for i in range(0, len(tasks), 10):  # a spread of resets on forks, as the engine makes them
        msgs = env.fork().reset(tasks[i], seed=i)
        assert msgs[0].role == "system" and tasks[i].instruction in msgs[1].content


def test_gold_replay_scores_one_on_a_few_tasks():
    # retail 2: required outputs; 10: ends by a transfer; 70: τ-bench's gold list is the write
    # alone, ours looks the user, order and product up first (reads: τ-bench's reward is the
    # same); airline 2: outputs, five writes on five reservations
    trajs = _replay("retail", [0, 2, 10, 70]) + _replay("airline", [0, 2])
    retail = TauBenchEnv(env_name="retail", user="scripted").tasks("test")
    assert [a.name for a in retail[70].gold_actions] == [
        "find_user_id_by_email",
        "get_user_details",
        "get_order_details",
        "get_product_details",
        "exchange_delivered_order_items",
    ]
    assert retail[70].data["reads_added"] == 4
    assert retail[0].gold_actions[0].name == "find_user_id_by_name_zip"  # τ-bench's own lookup is kept
    for traj in trajs:
        assert traj.success and traj.reward == 1.0 and not traj.truncated, traj.task_id
        info = traj.turns[-1].info
        assert info["reward_info"]["db_match"] is True and all(info["reward_info"]["outputs"].values())
        assert not any(t.info.get("deviation") for t in traj.turns), (
            traj.task_id
        )  # gold is never judged wrong
    assert trajs[1].turns[-1].info["reward_info"]["outputs"]  # task 2 has outputs, checked one by one


@pytest.mark.slow
@pytest.mark.parametrize("domain", ["retail", "airline"])
def test_gold_replay_scores_one_on_every_test_task(domain):
    trajs = _replay(domain, None)
    assert len(trajs) == {"retail": 115, "airline": 50}[domain]
    assert [t.task_id for t in trajs if not (t.success and t.reward == 1.0)] == []


def test_a_cut_episode_is_truncated_with_no_reward():
    (traj,) = _replay("retail", [2], max_turns=3)  # 12 gold calls do not fit in 3 turns
    assert len(traj.turns) == 3 and traj.truncated and not traj.success and traj.reward == 0.0
    assert traj.turns[-1].info["truncated"] and "reward_info" not in traj.turns[-1].info


def test_wrong_final_database_and_missing_outputs_are_told_apart():
    env = TauBenchEnv(env_name="retail", user="scripted")
    task = env.tasks("test")[2]  # outputs: ["10"]
    e = env.fork()
    e.reset(task)
    for a in task.gold_actions:
        e.step(a)
    r = e.step(Action.reply("All done."))  # the required output is never said
    assert r.done and r.reward == 0.0
    assert r.info["reward_info"] == {"reward": 0.0, "db_match": True, "outputs": {"10": False}}
    e = env.fork()
    e.reset(task)
    r = e.step(Action.reply("Done. 10"))  # says the output but makes none of the writes
    assert r.info["reward_info"]["db_match"] is False and r.info["reward_info"]["outputs"] == {"10": True}


def test_check_action_against_the_gold_plan():
    env = TauBenchEnv(env_name="retail", user="scripted")
    task = env.tasks("test")[0]
    e = env.fork()
    e.reset(task)
    auth, *reads, write = task.gold_actions
    early = e.check_action(write)  # the right write, but before authentication
    assert early["deviation"] is False and early["rule"] == AUTHENTICATE_FIRST
    e.step(auth)
    for a in reads:
        assert e.check_action(a)["deviation"] is False
        e.step(a)
    wrong = Action(write.name, {**write.kwargs, "payment_method_id": "gift_card_0000000"})
    j = e.check_action(wrong)
    assert j["deviation"] and j["rule"] is None and "payment_method_id" in j["off_plan"]
    assert e.check_action(Action("transfer_to_human_agents", {"summary": "help"}))["deviation"]
    assert e.check_action(Action("launch_rocket", {}))["rule"] == KNOWN_TOOLS
    assert e.check_action(None)["deviation"]
    assert e.check_action(write) == {"deviation": False, "rule": None, "violation": None}
    assert e.plan() == [write]
    e.step(write)
    assert e.plan() == [] and e.check_action(write)["deviation"]  # no write is left to make


def test_llm_user_without_litellm_names_litellm_not_tau_bench(monkeypatch):
    for name in [m for m in sys.modules if m == "tau_bench" or m.startswith("tau_bench.")]:
        monkeypatch.delitem(sys.modules, name)  # restored after the test
    monkeypatch.setitem(sys.modules, "litellm", None)  # as if litellm were not installed
    env = TauBenchEnv(env_name="retail", user="llm")
    task = env.tasks("test")[0]  # listing works without litellm
    with pytest.raises(ImportError) as err:
        env.fork().reset(task)
    assert str(err.value) == LITELLM_HINT and "not installed: `pip install litellm`" in str(err.value)
    assert sys.modules["litellm"] is None  # the stand-in never outlives the import


def test_tau_llm_user_settings_and_prompt():
    from lightning_asym.backends.scripted import ScriptedBackend

    user = TauLLMUser(
        model="m", base_url="http://127.0.0.1:9/v1", api_key_env="MY_KEY", max_tokens=64, temperature=0.5
    )
    assert user.backend.base_url == "http://127.0.0.1:9/v1" and user.backend.api_key_env == "MY_KEY"
    assert user.sampling.max_new_tokens == 64 and user.sampling.temperature == 0.5
    assert "{instruction}" in user.prompt and "###STOP###" in user.prompt  # τ-bench's own user prompt
    user.backend = ScriptedBackend(responses=["I want to exchange a keyboard.", "Thanks! ###STOP###"])
    env = TauBenchEnv(env_name="retail", user=user)
    (traj,) = RolloutEngine(env).collect(env.tasks("test")[:1], ScriptedBackend(responses=["Sure, done."]))
    assert traj.messages[1].content == "I want to exchange a keyboard."
    assert traj.turns[-1].done and len(traj.turns) == 1 and traj.reward == 0.0  # nothing was exchanged


def test_tau_llm_user_talks_to_an_openai_compatible_endpoint(monkeypatch):
    from test_openai_backend import FakeServer, ok

    server = FakeServer()
    try:
        server.replies(ok("Hi, I'd like to exchange two items."), ok("Great, thanks! ###STOP###"))
        monkeypatch.setenv("TAU_USER_KEY", "sk-user")
        user = TauLLMUser(
            model="user-m", base_url=server.url, api_key_env="TAU_USER_KEY", max_tokens=77, temperature=0.3
        )
        env = TauBenchEnv(env_name="retail", user=user)
        (traj,) = RolloutEngine(env).collect(env.tasks("test")[:1], gold_actor())
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    assert (
        traj.success
        and traj.reward == 1.0
        and traj.messages[1].content == "Hi, I'd like to exchange two items."
    )
    first = server.requests[0]
    assert first["headers"]["authorization"] == "Bearer sk-user"
    body = first["body"]
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("user-m", 77, 0.3)
    system = body["messages"][0]["content"]
    assert body["messages"][0]["role"] == "system" and env.tasks("test")[0].instruction in system
    assert body["messages"][1] == {
        "role": "user",
        "content": "Hi! How can I help you today?",
    }  # τ-bench's opener
    assert "tools" not in body and len(server.requests) == 2


def test_check_action_after_a_failed_lookup_and_skipped_reads():
    env = TauBenchEnv(env_name="retail", user="scripted")
    task = env.tasks("test")[0]
    e = env.fork()
    e.reset(task)
    auth, *reads, write = task.gold_actions
    assert e.step(Action(auth.name, {**auth.kwargs, "zip": "00000"})).info["error"]  # nobody found
    assert e.check_action(write)["rule"] == AUTHENTICATE_FIRST  # a failed lookup authenticates nobody
    e.step(auth)
    assert e.check_action(write) == {"deviation": False, "rule": None, "violation": None}  # reads skipped
    e.step(write)
    assert e.plan() == reads  # only the skipped reads remain


def test_tau_llm_user_of_another_provider_goes_through_litellm(monkeypatch):
    import types

    from lightning_asym.types import Task

    calls = []

    def completion(**kw):
        calls.append(kw)
        message = types.SimpleNamespace(content="Hello there.")
        return types.SimpleNamespace(choices=[types.SimpleNamespace(message=message)])

    monkeypatch.setitem(sys.modules, "litellm", types.SimpleNamespace(completion=completion))
    monkeypatch.setenv("ANTHROPIC_KEY_X", "k")
    user = TauLLMUser(model="claude-x", provider="anthropic", api_key_env="ANTHROPIC_KEY_X", max_tokens=50)
    assert user.reset(Task(id="t", split="test", instruction="You are Bo.")) == "Hello there."
    (kw,) = calls
    assert (kw["model"], kw["custom_llm_provider"], kw["api_key"], kw["max_tokens"]) == (
        "claude-x",
        "anthropic",
        "k",
        50,
    )
    assert "You are Bo." in kw["messages"][0]["content"] and "api_base" not in kw
    monkeypatch.setitem(sys.modules, "litellm", None)
    with pytest.raises(ImportError, match="pip install litellm"):
        user.respond("Hi")


def test_privileged_text_lists_the_gold_calls_as_the_critic_reads_a_proposal():
    from lightning_asym.review.format import render_action

    task = TauBenchEnv(env_name="retail", user="scripted").tasks("test")[0]
    assert task.privileged.startswith("User goal: ") and task.instruction in task.privileged
    for action in task.gold_actions:
        assert f"- {render_action(action)}\n" in task.privileged


class _BothRewards(TauBenchEnv):
    """Records the adapter's reward and τ-bench's own on the same final database (the adapter's
    cached path leaves the database as the episode left it, so τ-bench can still score it)."""

    pairs: list[tuple[str, float, float]] = []

    def _calculate_reward(self):
        res = super()._calculate_reward()
        theirs = type(self._env).calculate_reward(self._env)  # replays gold into env.data: last
        self.pairs.append((self._task.id, float(res.reward), float(theirs.reward)))
        return res


def test_the_cached_gold_digest_scores_as_tau_bench_does():
    from lightning_asym.envs.retail.oracle import NoisyOracleBackend

    env = _BothRewards(env_name="retail", user="scripted", max_turns=30)
    tasks = env.tasks("test")[:12]
    trajs = RolloutEngine(env, seed=0).collect(tasks, NoisyOracleBackend(error_rate=0.3), trials=3)
    pairs = _BothRewards.pairs
    assert len(pairs) == sum(not t.truncated for t in trajs) and len(pairs) > 24
    assert [p for p in pairs if p[1] != p[2]] == []
    assert {p[1] for p in pairs} == {0.0, 1.0}  # both outcomes, so the check can fail either way
    assert len(env._gold_digests) == 12  # the gold database was built once per task
