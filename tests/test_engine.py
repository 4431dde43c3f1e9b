from __future__ import annotations

import json

import pytest
from toy_env import GuessEnv, guess_policy

from lightning_asym.backends import ScriptedBackend
from lightning_asym.rollout import RolloutEngine, SupervisionConfig
from lightning_asym.types import REVISION_PREFIX, Review, to_dict


class Recording(ScriptedBackend):
    """Records the batch size of every call and which keys were released."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.batch_sizes: list[int] = []
        self.released: list[str] = []
        self.conversations: list = []

    def complete(self, conversations, tools=None, sampling=None, *, keys=None, seeds=None):
        self.batch_sizes.append(len(conversations))
        self.conversations.extend([list(c) for c in conversations])
        return super().complete(conversations, tools, sampling, keys=keys, seeds=seeds)

    def release(self, keys):
        self.released.extend(keys)
        super().release(keys)


def _dump(trajs) -> str:
    return json.dumps([to_dict(t) for t in trajs], sort_keys=True)


def test_same_seed_gives_identical_trajectories():
    env = GuessEnv(num_tasks=6)
    tasks = env.tasks("test")
    a = RolloutEngine(env, seed=3).collect(tasks, ScriptedBackend(policy=guess_policy), trials=3)
    b = RolloutEngine(env, seed=3).collect(tasks, ScriptedBackend(policy=guess_policy), trials=3)
    c = RolloutEngine(env, seed=4).collect(tasks, ScriptedBackend(policy=guess_policy), trials=3)
    assert _dump(a) == _dump(b)
    assert _dump(a) != _dump(c)
    assert [(t.task_id, t.trial) for t in a] == [(task.id, k) for task in tasks for k in range(3)]


def test_trajectories_do_not_depend_on_batch_composition():
    env = GuessEnv(num_tasks=6)
    tasks = env.tasks("test")
    engine = RolloutEngine(env, seed=1)
    together = engine.collect(tasks, ScriptedBackend(policy=guess_policy), trials=2)
    alone = [
        t for task in tasks for t in engine.collect([task], ScriptedBackend(policy=guess_policy), trials=2)
    ]
    assert _dump(together) == _dump(alone)


def test_finished_episodes_leave_the_batch():
    # scripted: episodes 0,1 guess at once (done after 1 turn); others chat until truncated
    def policy(messages, task, rng):
        if task.id.endswith(("-0", "-1")):
            return '<tool_call>{"name": "guess", "arguments": {"n": 0}}</tool_call>'
        return "tell me more"

    env = GuessEnv(num_tasks=4, max_turns=3)
    actor = Recording(policy=policy)
    trajs = RolloutEngine(env).collect(env.tasks("test"), actor)
    assert actor.batch_sizes == [4, 2, 2]
    assert sorted(actor.released) == sorted(f"{t.task_id}#0#{i}" for i, t in enumerate(trajs))
    assert [t.num_turns for t in trajs] == [1, 1, 3, 3]
    assert [t.truncated for t in trajs] == [False, False, True, True]
    assert all(not t.success for t in trajs[2:])


def test_engine_max_turns_overrides_env():
    env = GuessEnv(num_tasks=2, max_turns=10)
    trajs = RolloutEngine(env, max_turns=2).collect(env.tasks("test"), ScriptedBackend(responses=["hm"]))
    assert [t.num_turns for t in trajs] == [2, 2]


def test_parse_error_becomes_an_observation():
    env = GuessEnv(num_tasks=1, max_turns=2)
    actor = ScriptedBackend(
        responses=["<tool_call>{oops</tool_call>", '<tool_call>{"name": "nope"}</tool_call>']
    )
    (traj,) = RolloutEngine(env).collect(env.tasks("test"), actor)
    first, second = traj.turns
    assert first.action is None and "not valid JSON" in first.parse_error
    assert first.observation[0].role == "user" and first.observation[0].content.startswith("Error:")
    assert first.info["parse_error"] is True
    # unknown tool: the env answers with an error observation tied to the call
    assert second.action.name == "nope" and second.info["error"].startswith("unknown tool")
    assert second.observation[0].tool_call_id == "call_1"
    assert traj.messages[-1].content.startswith("Error:")


class RejectFirst:
    """A reviewer that approves only the text "revised"."""

    def __init__(self):
        self.requests = []

    def review(self, requests):
        self.requests.extend(requests)
        return [Review("approve") if r.text == "revised" else Review("revise", "try again") for r in requests]


def test_supervision_revises_within_the_turn():
    env = GuessEnv(num_tasks=2, max_turns=1)

    def policy(messages, task, rng):
        return "revised" if messages[-1].content.startswith(REVISION_PREFIX) else "first try"

    actor = Recording(policy=policy)
    critic = RejectFirst()
    engine = RolloutEngine(env, supervision=SupervisionConfig(max_revisions=2, privileged=True))
    trajs = engine.collect(env.tasks("test"), actor, critic)
    for t in trajs:
        (turn,) = t.turns
        assert [p.text for p in turn.proposals] == ["first try", "revised"]
        assert [p.review.verdict for p in turn.proposals] == ["revise", "approve"]
        assert turn.text == "revised"
        assert t.info["actor_tokens"] == 3  # both proposals count
        # the final conversation holds only the action that went out, no feedback
        assert not any(REVISION_PREFIX in (m.content or "") for m in t.messages)
    # revisions were batched: one call for both episodes
    assert actor.batch_sizes == [2, 2]
    assert actor.conversations[2][-1].content == f"{REVISION_PREFIX} try again"
    assert all(r.privileged == r.task.privileged for r in critic.requests)


@pytest.mark.parametrize("fallback,expected", [("last", "second"), ("first", "first"), ("block", None)])
def test_supervision_fallback_when_budget_is_spent(fallback, expected):
    env = GuessEnv(num_tasks=1, max_turns=1)
    actor = ScriptedBackend(responses=["first", "second"])

    class Never:
        def review(self, requests):
            return [Review("revise", "no") for _ in requests]

    config = SupervisionConfig(max_revisions=1, fallback=fallback)
    (traj,) = RolloutEngine(env, supervision=config).collect(env.tasks("test"), actor, Never())
    turn = traj.turns[0]
    assert len(turn.proposals) == 2
    assert turn.text == (expected or config.block_message)


def test_invalid_supervision_config():
    with pytest.raises(ValueError, match="supervision.fallback"):
        SupervisionConfig(fallback="retry")


def test_get_task_by_id():
    env = GuessEnv(num_tasks=3)
    task = env.tasks("test")[2]
    assert env.get_task("test", task.id) == task
    with pytest.raises(KeyError, match="no task 'missing' in split 'test'"):
        env.get_task("test", "missing")


def test_run_is_play_of_fresh_episodes_and_records_the_privileged_text_once():
    env = GuessEnv(num_tasks=3)
    tasks = env.tasks("test")
    engine = RolloutEngine(env, seed=5)
    ran = engine.run([(t, 0) for t in tasks], ScriptedBackend(policy=guess_policy))
    episodes = [engine.start_episode(t, 0, key=f"k{i}") for i, t in enumerate(tasks)]
    played = engine.play(episodes, ScriptedBackend(policy=guess_policy))
    assert _dump(ran) == _dump(played)
    assert [t.privileged for t in played] == [env.privileged(t) for t in tasks]


def test_an_episode_started_from_a_prefix_goes_on_from_its_last_turn():
    from lightning_asym.datagen.prefix import Prefix, start_from

    env = GuessEnv(num_tasks=2)
    task = env.tasks("test")[0]
    engine = RolloutEngine(env, seed=1)
    (whole,) = engine.collect([task], ScriptedBackend(policy=guess_policy))
    assert len(whole.turns) >= 2
    actor = Recording(policy=guess_policy)
    ep = start_from(engine, Prefix(task, whole, turn=1, seed=whole.seed), key="branch")
    assert ep.traj.messages == whole.messages[: whole.state_boundaries()[1]]
    (again,) = engine.play([ep], actor)
    # the prefix was not played again: the actor was asked only from turn 1 on
    assert len(actor.batch_sizes) == len(whole.turns) - 1
    assert again.turns[:1] == whole.turns[:1] and again.success == whole.success
    assert again.info["prefix_turns"] == 1 and actor.released == ["branch"]


def test_play_refuses_duplicate_keys():
    env = GuessEnv(num_tasks=1)
    engine = RolloutEngine(env)
    (task,) = env.tasks("test")
    with pytest.raises(ValueError, match="distinct"):
        engine.play(
            [engine.start_episode(task, 0), engine.start_episode(task, 1, key=f"{task.id}#0")],
            ScriptedBackend(policy=guess_policy),
        )


def test_envs_that_do_not_judge_leave_proposals_unlabelled():
    env = GuessEnv(num_tasks=1)
    (task,) = env.tasks("test")
    assert env.check_action(None) is None and env.plan() is None

    class Always:
        def review(self, requests):
            return [Review("approve") for _ in requests]

    (traj,) = RolloutEngine(env).collect([task], ScriptedBackend(policy=guess_policy), Always())
    assert all(p.label is None for t in traj.turns for p in t.proposals)


def test_an_episode_the_env_cuts_at_its_own_max_turns_is_recorded_truncated():
    from lightning_asym.envs.retail import RetailEnv
    from lightning_asym.envs.retail.oracle import NoisyOracleBackend

    env = RetailEnv(num_train=0, num_validation=0, num_test=2, max_turns=2)
    trajs = RolloutEngine(env).collect(env.tasks("test"), NoisyOracleBackend(error_rate=0.0))
    assert all(t.num_turns == 2 and t.truncated for t in trajs)
    assert not any(t.success for t in trajs)
