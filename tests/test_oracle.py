"""NoisyOracleBackend: a gold-plan actor that succeeds when clean and fails like LLM agents when noisy."""

from __future__ import annotations

import zlib

import pytest
from toy_env import GuessEnv

from lightning_asym.backends.toolcalls import TOOL_OPEN, parse_action
from lightning_asym.envs.retail import RetailEnv
from lightning_asym.envs.retail.oracle import MODES, NoisyOracleBackend
from lightning_asym.envs.retail.policy import (
    AUTHENTICATE_FIRST,
    EXPLICIT_CONFIRMATION,
    NO_MADE_UP_FACTS,
    NO_NEEDLESS_TRANSFER,
)
from lightning_asym.envs.retail.tools import WRITE_TOOLS
from lightning_asym.rollout.engine import RolloutEngine
from lightning_asym.types import REVISION_PREFIX, Message


@pytest.fixture(scope="module")
def env():
    return RetailEnv()


def env_critic(e, action):
    """A critic that knows what the env knows: reject deviations and policy violations."""
    info = e.check_action(action)
    if info["deviation"] or info["violation"]:
        return f"Do not do that: {info['violation'] or 'this is not what the user asked for'}."
    return None


def drive(env, task, oracle, seed=0, critic=None, max_revisions=2):
    """reset -> oracle.complete -> parse_action -> step, with optional critic revisions in the turn."""
    e = env.fork()
    msgs = e.reset(task, seed)
    key = f"{task.id}#{seed}"
    oracle.start(key, task)
    base = zlib.crc32(key.encode()) % 100_000  # per-episode seeds, as the rollout engine gives
    steps = []
    tools = env.tool_schemas
    for turn in range(env.max_turns):
        (c,) = oracle.complete([msgs], tools, keys=[key], seeds=[base + turn])
        action, err = parse_action(c.text)
        assert err is None and action == c.action
        assert action.is_reply or c.text.startswith(TOOL_OPEN)  # the same text format a model emits
        view = list(msgs)
        for _ in range(max_revisions if critic else 0):
            feedback = critic(e, action)
            if feedback is None:
                break
            view = [
                *view,
                Message("assistant", content=c.text),
                Message("user", content=f"{REVISION_PREFIX} {feedback}"),
            ]
            (c,) = oracle.complete([view], tools, keys=[key], seeds=[base + turn + 7])
            action, _ = parse_action(c.text)
        r = e.step(action)
        steps.append((action, r.info))
        msgs = [*msgs, action.to_message(f"call_{turn}", text=c.text), *r.messages]
        if r.done:
            break
    oracle.release([key])
    return r.info, steps


def success_rate(env, oracle, tasks, seeds=(0,), critic=None):
    runs = [drive(env, t, oracle, s, critic)[0] for t in tasks for s in seeds]
    return sum(bool(i.get("success")) for i in runs) / len(runs)


def test_clean_oracle_solves_every_test_task_without_flags(env):
    oracle = NoisyOracleBackend(error_rate=0.0)
    for task in env.tasks("test"):
        info, steps = drive(env, task, oracle)
        assert info["success"], task.id
        assert not any(i["deviation"] or i["violation"] for _, i in steps), task.id
    assert sum(oracle.injected.values()) == 0


def test_failure_rates_within_tolerance(env):
    oracle = NoisyOracleBackend(error_rate=0.25)
    tasks = env.tasks("test")
    for s in (1, 2):
        for t in tasks:
            drive(env, t, oracle, seed=s)
    for mode in MODES:
        n = oracle.opportunities[mode]
        assert n >= 100, (mode, n)
        assert abs(oracle.injected[mode] / n - 0.25) < 0.1, (mode, oracle.injected[mode], n)


def test_success_falls_with_error_rate(env):
    tasks = env.tasks("test")[:60]
    rates = [success_rate(env, NoisyOracleBackend(error_rate=r), tasks) for r in (0.0, 0.05, 0.2)]
    assert rates[0] == 1.0 and rates[0] > rates[1] > rates[2]


@pytest.mark.parametrize(
    "mode,succeeds,flag",
    [
        ("give_up", False, NO_NEEDLESS_TRANSFER),
        ("premature_end", False, None),
        ("wrong_order", False, "deviation"),
        ("wrong_argument", False, "deviation"),
        ("skipped_confirmation", True, EXPLICIT_CONFIRMATION),
        ("unauthenticated_write", True, AUTHENTICATE_FIRST),
    ],
)
def test_each_failure_mode(env, mode, succeeds, flag):
    oracle = NoisyOracleBackend(error_rate=0.0, **{mode: 1.0})
    tasks = [t for t in env.tasks("test") if t.gold_actions[0].name != "transfer_to_human_agents"][:15]
    for t in tasks:
        info, steps = drive(env, t, oracle)
        assert bool(info["success"]) == succeeds, (mode, t.id)
        if flag == "deviation":
            assert any(i["deviation"] for _, i in steps)
        elif flag is not None:
            assert any(i["rule"] == flag and i["violation"] for _, i in steps)
    assert oracle.injected[mode] >= len(tasks)


def test_hallucinated_output(env):
    oracle = NoisyOracleBackend(error_rate=0.0, hallucinated_output=1.0)
    for t in env.tasks("test")[:30]:
        info, steps = drive(env, t, oracle)
        assert info["db_match"]
        flagged = [i for a, i in steps if a.is_reply and i["deviation"]]
        assert bool(flagged) == any("." in o for o in t.required_outputs), t.id
        assert all(i["rule"] == NO_MADE_UP_FACTS and i["unsupported"] for i in flagged)
        if any("." in o for o in t.required_outputs):  # a short count like "7" may appear by chance
            assert not info["success"], t.id
        elif not t.required_outputs:
            assert info["success"], t.id


def test_deterministic_given_seeds(env):
    task = env.tasks("test")[3]

    def texts(seed):
        oracle = NoisyOracleBackend(error_rate=0.3)
        _, steps = drive(env, task, oracle, seed=seed)
        return [a for a, _ in steps]

    assert texts(5) == texts(5)
    assert any(texts(s) != texts(5) for s in range(6, 12))


def test_revision_fixes_injected_mistakes(env):
    tasks = env.tasks("test")[:25]
    noisy = dict(
        error_rate=0.0,
        wrong_argument=0.5,
        wrong_order=0.5,
        skipped_confirmation=0.5,
        unauthenticated_write=0.5,
        give_up=0.3,
        hallucinated_output=0.5,
    )
    fixer = NoisyOracleBackend(**noisy, fix_prob=1.0)
    for t in tasks:
        info, steps = drive(env, t, fixer, critic=env_critic)
        assert info["success"] and not any(i["deviation"] or i["violation"] for _, i in steps), t.id
    assert sum(fixer.injected.values()) > 20
    stubborn = NoisyOracleBackend(**noisy, fix_prob=0.0)
    assert success_rate(env, stubborn, tasks, critic=env_critic) < 0.5


def _reject_first(env, oracle, task):
    msgs = env.fork().reset(task)
    oracle.start("k", task)
    (c,) = oracle.complete([msgs], keys=["k"], seeds=[0])
    view = [*msgs, Message("assistant", content=c.text), Message("user", content=f"{REVISION_PREFIX} no")]
    (again,) = oracle.complete([view], keys=["k"], seeds=[1])
    return c, again


def test_rejected_clean_proposal_is_repeated_unless_misled(env):
    task = env.tasks("test")[0]
    c, again = _reject_first(env, NoisyOracleBackend(error_rate=0.0, misled_prob=0.0), task)
    assert again.text == c.text
    c, misled = _reject_first(env, NoisyOracleBackend(error_rate=0.0, misled_prob=1.0), task)
    assert misled.action.name == "transfer_to_human_agents"  # a correct lookup, talked out of it


def test_misled_write_gets_a_wrong_argument(env):
    task = env.tasks("test")[0]
    oracle = NoisyOracleBackend(error_rate=0.0, misled_prob=1.0)
    e = env.fork()
    msgs = e.reset(task)
    oracle.start("k", task)
    for step in range(40):  # play cleanly up to the first write, then reject it
        (c,) = oracle.complete([msgs], keys=["k"], seeds=[step])
        if c.action.name in WRITE_TOOLS:
            break
        msgs += [c.action.to_message(f"call_{step}", text=c.text), *e.step(c.action).messages]
    view = [*msgs, Message("assistant", content=c.text), Message("user", content=f"{REVISION_PREFIX} no")]
    (bad,) = oracle.complete([view], keys=["k"], seeds=[99])
    assert bad.action.name == c.action.name and bad.action.kwargs != c.action.kwargs
    assert e.check_action(bad.action)["deviation"] and not e.check_action(c.action)["deviation"]


def test_rollout_engine_and_generic_tasks(env):
    trajs = RolloutEngine(env).collect(env.tasks("validation")[:8], NoisyOracleBackend(error_rate=0.0))
    assert all(t.success for t in trajs)
    guess = GuessEnv(num_tasks=4)
    trajs = RolloutEngine(guess).collect(guess.tasks("test"), NoisyOracleBackend(error_rate=0.0))
    assert all(t.success for t in trajs)
    assert NoisyOracleBackend(0.0).complete([[Message("user", content="hi")]])[0].action.is_reply
    with pytest.raises(ValueError):
        NoisyOracleBackend(error_rate=1.5)


def test_retail_behaviour_matches_the_recorded_run():
    """Same seeds, same proposals on our retail as main's code gave (see tests/oracle_record.py)."""
    import json
    from pathlib import Path

    from oracle_record import record

    expected = json.loads((Path(__file__).parent / "data" / "oracle_retail_record.json").read_text())
    assert record() == expected
