"""Few-shot review examples come from the env (`MultiTurnEnv.review_examples`), not the review room.

The prompts must not move: a critic fine-tuned without examples reads exactly the prompt it was
trained on, and a retail few-shot critic reads exactly what it read when the two examples were
hard-coded in `review/generative.py`. `GOLDEN` is a copy of that hard-coded text.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest

from lightning_asym.backends.base import ChatBackend, Completion
from lightning_asym.envs import MultiTurnEnv, PreferencesEnv, RetailEnv, StepResult
from lightning_asym.envs.base import fits_tools
from lightning_asym.envs.retail.oracle import NoisyOracleBackend
from lightning_asym.review import GenerativeCritic, ReviewRequest
from lightning_asym.review.format import review_prompt
from lightning_asym.rollout import RolloutEngine, SupervisionConfig
from lightning_asym.types import APPROVE, REVISE, Action, Message, ReviewExample, Task

_USER = Message("user", content="Hi, please cancel my order #W1234567, I no longer need it.")
GOLDEN: tuple[tuple[list[Message], Action, str], ...] = (
    (
        [_USER],
        Action("cancel_pending_order", {"order_id": "#W1234567", "reason": "no longer needed"}),
        "VERDICT: revise\nFEEDBACK: The user is not authenticated yet: find their user id by email first.",
    ),
    (
        [
            _USER,
            Message("assistant", content="Sure. Could you give me your email address?"),
            Message("user", content="It is ana.lee@example.com"),
        ],
        Action("find_user_id_by_email", {"email": "ana.lee@example.com"}),
        "VERDICT: approve\nFEEDBACK: ",
    ),
)
"""The retail few-shot examples as `GenerativeCritic` hard-coded them (transcript, action, answer)."""

TASK = Task(id="t0", split="test")
CONV = [
    Message("system", content="POLICY: authenticate before any write."),
    Message("user", content="Cancel my order #W1 please."),
    Message("assistant", content="Sure, what is your email?"),
    Message("user", content="a@b.c"),
]
ACTION = Action("find_user_id_by_email", {"email": "a@b.c"})


class Canned(ChatBackend):
    """Approves everything and records each prompt it was sent."""

    def __init__(self) -> None:
        self.prompts: list[list[Message]] = []

    def complete(self, conversations, tools=None, sampling=None, *, keys=None, seeds=None):
        self.prompts += [list(c) for c in conversations]
        return [Completion("VERDICT: approve\nFEEDBACK:", None) for _ in conversations]


def golden_prompt(messages, action, privileged=None, *, few_shot: bool, **options) -> list[Message]:
    """The prompt as today's code path builds it: `review_prompt`, with the golden examples
    inserted between the system prompt and the request when few-shot."""
    prompt = review_prompt(messages, action, "", privileged, **options)
    if not few_shot:
        return prompt
    shots = [
        t for m, a, answer in GOLDEN for t in (review_prompt(m, a)[-1], Message("assistant", content=answer))
    ]
    return [prompt[0], *shots, *prompt[1:]]


def req(examples=(), messages=CONV, privileged=None) -> ReviewRequest:
    return ReviewRequest(messages, "", ACTION, None, TASK, [], privileged, key="ep", examples=examples)


@pytest.mark.parametrize(
    "options",
    [{}, {"include_policy": False}, {"max_messages": 2}, {"privileged": True}],
    ids=["plain", "no_policy", "max_messages", "privileged"],
)
def test_prompts_are_byte_identical_to_the_hard_coded_examples(options):
    retail = RetailEnv().review_examples()
    secret = "order #W1 is pending" if options.get("privileged") else None
    prompt_options = {k: v for k, v in options.items() if k != "privileged"}
    for few_shot in (False, True):
        expected = golden_prompt(CONV, ACTION, secret, few_shot=few_shot, **prompt_options)
        critic = GenerativeCritic(Canned(), few_shot=few_shot, **options)
        # from the env through the request (the engine's path), or named explicitly (serve's)
        assert critic.prompt(req(retail, privileged=secret)) == expected
        named = GenerativeCritic(Canned(), few_shot=few_shot, examples="retail", **options)
        assert named.prompt(req(privileged=secret)) == expected
        text = "\x00".join(f"{m.role}:{m.content}" for m in critic.prompt(req(retail, privileged=secret)))
        assert text == "\x00".join(f"{m.role}:{m.content}" for m in expected)  # the very bytes
    # without few-shot the examples never reach the prompt, whatever the request carries
    assert GenerativeCritic(Canned(), **options).prompt(req(retail, privileged=secret)) == golden_prompt(
        CONV, ACTION, secret, few_shot=False, **prompt_options
    )


def test_the_engine_passes_one_tuple_of_the_env_s_examples_with_every_request():
    env = RetailEnv()
    seen: list[ReviewRequest] = []
    expected: list[list[Message]] = []

    class Recorder(GenerativeCritic):
        def review(self, requests):
            seen.extend(requests)
            # now: the engine goes on appending to the conversation the request holds
            expected.extend(
                golden_prompt(r.messages, r.action, r.privileged, few_shot=True, include_policy=False)
                for r in requests
            )
            return super().review(requests)

    backend = Canned()
    critic = Recorder(backend, few_shot=True, include_policy=False)
    engine = RolloutEngine(env, max_turns=4, supervision=SupervisionConfig(max_revisions=1))
    engine.collect(env.tasks("test")[:2], NoisyOracleBackend(error_rate=0.0), critic)
    assert len(seen) >= 4 and len({id(r.examples) for r in seen}) == 1
    assert seen[0].examples is env.review_examples()
    assert backend.prompts == expected


def test_explicit_examples_override_the_env_s():
    mine = (ReviewExample((Message("user", content="hello"),), Action.reply("hi"), APPROVE),)
    critic = GenerativeCritic(Canned(), few_shot=True, examples=mine)
    prompt = critic.prompt(req(RetailEnv().review_examples()))
    assert len(prompt) == 4 and prompt[1].content.endswith("reply to the user: hi")
    assert prompt[2].content == "VERDICT: approve\nFEEDBACK: "
    with pytest.raises(ValueError, match=r"model\.reviewer\.init_args\.examples: no env named 'shop'"):
        GenerativeCritic(Canned(), few_shot=True, examples="shop")


def test_few_shot_without_examples_warns_once_naming_the_key(caplog):
    critic = GenerativeCritic(Canned(), few_shot=True)
    with caplog.at_level(logging.WARNING, logger="lightning_asym.review.generative"):
        prompts = [critic.prompt(req()) for _ in range(3)]
        critic.review([req(), req()])
    warnings = [r for r in caplog.records if "few_shot" in r.getMessage()]
    assert len(warnings) == 1 and "model.reviewer.init_args.few_shot" in warnings[0].getMessage()
    assert all(p == golden_prompt(CONV, ACTION, few_shot=False) for p in prompts)  # zero-shot
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lightning_asym.review.generative"):
        GenerativeCritic(Canned()).prompt(req())  # few-shot off: nothing to say
        GenerativeCritic(Canned(), few_shot=True).prompt(req(RetailEnv().review_examples()))
    assert not caplog.records


class Bare(MultiTurnEnv):
    """An env that implements only the abstract methods."""

    def tasks(self, split):
        return []

    def reset(self, task, seed=0):
        return []

    def step(self, action):
        return StepResult([])

    @property
    def tool_schemas(self):
        return []


@pytest.mark.parametrize("env", [RetailEnv(), PreferencesEnv()], ids=["retail", "preferences"])
def test_built_in_envs_give_a_revise_and_an_approve_example_with_their_own_tools(env):
    examples = env.review_examples()
    assert examples is env.review_examples()  # a constant: the engine asks once
    assert sorted(ex.verdict for ex in examples) == [APPROVE, REVISE]
    assert all(ex.feedback for ex in examples if ex.verdict == REVISE)
    assert all(m.role != "system" for ex in examples for m in ex.messages)
    assert fits_tools(examples, env.tool_schemas)
    assert env.fork().review_examples() is examples


def test_default_is_no_examples_and_fits_tools_checks_names_and_arguments():
    assert Bare().review_examples() == ()
    retail = RetailEnv().review_examples()
    assert not fits_tools(retail, PreferencesEnv().tool_schemas)
    renamed = [dataclasses.replace(retail[1], action=Action("find_user_id_by_email", {"mail": "x"}))]
    assert not fits_tools(renamed, RetailEnv().tool_schemas)
    assert fits_tools([ReviewExample((), Action.reply("ok"), APPROVE)], [])
    with pytest.raises(ValueError, match="verdict must be"):
        ReviewExample((), Action.reply("ok"), "maybe")


def test_an_example_s_request_is_rendered_like_a_review_request():
    critic = GenerativeCritic(Canned(), few_shot=True, include_policy=False)
    prompt = critic.prompt(req(RetailEnv().review_examples()))
    assert [m.role for m in prompt] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert prompt[3].content == review_prompt(GOLDEN[1][0], GOLDEN[1][1])[-1].content
    (review,) = critic.review([req(RetailEnv().review_examples())])
    assert review.verdict == APPROVE and review.parsed


def test_serve_and_the_supervisor_know_no_env_and_take_the_critic_s_own_examples():
    from lightning_asym.backends import ScriptedBackend
    from lightning_asym.serve.cli import make_server
    from lightning_asym.supervisor import Supervisor

    backend = Canned()
    critic = GenerativeCritic(backend, few_shot=True, examples="retail")
    Supervisor(ScriptedBackend(responses=["hello"]), critic, accelerator="cpu").step(CONV)
    assert backend.prompts == [golden_prompt(CONV, Action.reply("hello"), few_shot=True)]
    args = ["--audit_log", "null", "--accelerator", "cpu"]
    args += ["--actor", "lightning_asym.backends.ScriptedBackend", "--actor.init_args.responses", '["hi"]']
    args += ["--reviewer", "lightning_asym.review.GenerativeCritic", "--reviewer.init_args.few_shot", "true"]
    args += ["--reviewer.init_args.backend", "lightning_asym.backends.ScriptedBackend"]
    args += ["--reviewer.init_args.backend.init_args.responses", '["VERDICT: approve"]']
    # YAML gives the examples by env name or written out
    named = make_server([*args, "--reviewer.init_args.examples", "retail"]).proxy.reviewer
    assert named.prompt(req()) == golden_prompt(CONV, ACTION, few_shot=True)
    mine = '[{"messages": [{"role": "user", "content": "hi"}], "verdict": "approve",'
    mine += ' "action": {"name": "respond", "kwargs": {"content": "x"}}}]'
    written = make_server([*args, "--reviewer.init_args.examples", mine]).proxy.reviewer
    assert [m.content for m in written.prompt(req())[1:3]] == [
        "Conversation so far:\nuser: hi\n\nProposed next action:\nreply to the user: x",
        "VERDICT: approve\nFEEDBACK: ",
    ]
