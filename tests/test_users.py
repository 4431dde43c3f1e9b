"""User simulators: the protocol, the LLM-played user, and the env driving either."""

from __future__ import annotations

import random
from collections.abc import Sequence

from lightning_asym.backends import SamplingParams, ScriptedBackend
from lightning_asym.envs.preferences import PreferencesEnv, PreferenceUser
from lightning_asym.envs.users import STOP, LLMUser, UserSimulator, split_stop
from lightning_asym.types import Action, Message, Task


def test_protocol_and_stop_token():
    assert isinstance(PreferenceUser(), UserSimulator)
    assert isinstance(LLMUser(ScriptedBackend(responses=["hi"])), UserSimulator)
    assert not isinstance(object(), UserSimulator)
    assert split_stop(f"Thanks, bye! {STOP}") == ("Thanks, bye!", True)
    assert split_stop("Thanks!") == ("Thanks!", False)


def test_llm_user_keeps_its_own_flipped_conversation():
    seen: list[list[Message]] = []

    def play_user(messages: Sequence[Message], task: Task | None, rng: random.Random) -> str:
        seen.append(list(messages))
        assert task is not None and task.id == "t1"
        return f"user line {len(messages)}"

    backend = ScriptedBackend(policy=play_user)
    user = LLMUser(backend, SamplingParams(temperature=0.0))
    task = Task(id="t1", instruction="You want a cheap nonstop flight.")
    assert user.reset(task, seed=1) == "user line 2"
    assert user.respond("What matters to you?") == "user line 4"
    convo = seen[-1]
    assert (
        convo[0].role == "system" and "cheap nonstop flight" in convo[0].content and STOP in convo[0].content
    )
    # The agent speaks as `user`, the simulated user as `assistant`.
    assert [m.role for m in convo] == ["system", "user", "assistant", "user"]
    assert convo[-1].content == "What matters to you?" and convo[2].content == "user line 2"
    assert [m.role for m in user.conversation][-1] == "assistant"


class RecordingBackend(ScriptedBackend):
    """Remembers which keys were released."""

    def __init__(self, responses: list[str]) -> None:
        super().__init__(responses=responses)
        self.released: list = []

    def release(self, keys) -> None:
        self.released.extend(keys)
        super().release(keys)


def test_env_with_llm_user_copies_it_per_episode_and_honours_stop():
    backend = RecordingBackend(responses=["Hello, I need a flight and a hotel.", f"Great, thanks! {STOP}"])
    proto = LLMUser(backend)
    env = PreferencesEnv(num_test=3, user=proto)
    task = env.tasks("test")[0]
    e1, e2 = env.fork(), env.fork()
    opening = e1.reset(task, 0)
    e2.reset(env.tasks("test")[1], 0)
    assert opening[1] == Message("user", "Hello, I need a flight and a hotel.")
    r = e1.step(Action.reply("Here is my plan."))
    assert (
        r.done and r.messages == [Message("user", "Great, thanks!")] and r.info["end_reason"] == "user_stop"
    )
    assert proto.conversation == []  # the prototype itself never plays an episode
    assert backend.released == [e1._episode.user._key]  # the finished episode freed its backend state
    e1.close()
    assert len(backend.released) == 1
