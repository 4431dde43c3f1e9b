"""The preferences domain: generation invariants, the scripted user, env steps, scripted agents."""

from __future__ import annotations

import json
import random
import re

import pytest

import lightning_asym.envs as envs
from lightning_asym.backends import ScriptedBackend, parse_action
from lightning_asym.envs.base import StepResult
from lightning_asym.envs.preferences import (
    ASPECT_NAMES,
    ASPECTS,
    HINTS,
    ExpertPolicy,
    PreferencesEnv,
    PreferenceUser,
    RandomPolicy,
    classify,
    decode_hints,
    detect_aspects,
    score,
)
from lightning_asym.envs.preferences.generate import task_signature
from lightning_asym.envs.preferences.hints import HINT_INDEX
from lightning_asym.envs.preferences.user import DONE_RES
from lightning_asym.types import Action, Message, Task, to_dict

ALL_VALUES = sorted({v for spec in ASPECTS.values() for vs in spec.attributes.values() for v in vs})


def small_env(**kw) -> PreferencesEnv:
    return PreferencesEnv(**{"num_train": 50, "num_validation": 20, "num_test": 20, **kw})


def contains_value(text: str, value: str) -> bool:
    return re.search(r"(?<![\w-])" + re.escape(value) + r"(?![\w-])", text, re.IGNORECASE) is not None


def run_episode(env: PreferencesEnv, policy, task: Task, seed: int = 0) -> tuple[list[Message], StepResult]:
    ep = env.fork()
    messages = ep.reset(task, seed)
    for n in range(env.max_turns + 5):
        text = policy(messages, None, random.Random(f"{seed}:{n}"))
        action, err = parse_action(text)
        assert err is None, err
        result = ep.step(action)
        messages = [*messages, action.to_message(text=text), *result.messages]
        if result.done:
            return messages, result
    raise AssertionError("episode did not end")


# --------------------------------------------------------------------------- generation


def test_registered_and_configurable():
    env = envs.make_env("preferences", num_test=3, num_aspects=3)
    assert isinstance(env, PreferencesEnv) and "preferences" in envs.registered_envs()
    assert [len(t.data["aspects"]) for t in env.tasks("test")] == [3, 3, 3]
    assert {s["function"]["name"] for s in env.tool_schemas} == {"search", "recommend"}
    for bad in [dict(num_aspects=0), dict(prefs_per_aspect=9), dict(num_options=2), dict(max_turns=0)]:
        with pytest.raises(ValueError):
            PreferencesEnv(**bad)
    with pytest.raises(ValueError):
        PreferencesEnv(user="nobody")
    with pytest.raises(KeyError):
        env.tasks("dev")


@pytest.mark.parametrize(
    "knobs",
    [
        {},
        dict(num_aspects=5, prefs_per_aspect=4, num_options=12, num_acceptable=4),
        dict(num_options=3, num_acceptable=2),
        dict(num_options=5, num_acceptable=0, prefs_per_aspect=1),
        dict(
            num_options=4,
            num_acceptable=1,
            prefs_per_aspect=1,
            aspects=["hotel", "restaurant", "car"],
            attributes=["area", "cuisine", "type"],
        ),
    ],
)
def test_catalogue_invariants(knobs):
    env = PreferencesEnv(seed=3, num_test=150, **knobs)
    cfg = env.config
    for task in env.tasks("test"):
        d = task.data
        assert len(d["aspects"]) == cfg.num_aspects == len(set(d["aspects"]))
        for aspect in d["aspects"]:
            options, prefs = d["catalogue"][aspect], d["preferences"][aspect]
            assert len(prefs) == cfg.prefs_per_aspect and len(options) == cfg.num_options
            assert all(attr in HINTS[aspect] and v in HINTS[aspect][attr] for attr, v in prefs.items())
            assert len({o["id"] for o in options}) == len(options)
            assert len({o["price"] for o in options}) == len(options)  # no ties for "cheapest"
            kinds = {o["id"]: classify(options, prefs, o["id"]) for o in options}
            assert [i for i, k in kinds.items() if k == "best"] == [d["best"][aspect]]
            assert sorted(i for i, k in kinds.items() if k == "acceptable") == sorted(d["acceptable"][aspect])
            assert len(d["acceptable"][aspect]) == cfg.num_acceptable
            best_price = next(o["price"] for o in options if o["id"] == d["best"][aspect])
            if cfg.num_options - cfg.num_acceptable > 1:  # a cheaper decoy whenever there is a wrong option
                assert any(o["price"] < best_price for o in options if kinds[o["id"]] == "wrong")
        assert [a.name for a in task.gold_actions] == ["search", "recommend"] * cfg.num_aspects
        assert task.required_outputs == [] and json.loads(json.dumps(d)) == d
        assert all(d["best"][a] in task.privileged for a in d["aspects"])


def test_attributes_knob_limits_preferences_and_listed_attributes():
    env = PreferencesEnv(
        seed=1, num_test=40, prefs_per_aspect=1, aspects=["hotel", "car"], attributes=["area", "pets", "type"]
    )
    listed = {"hotel": {"area", "pets"}, "car": {"type"}}
    for task in env.tasks("test"):
        for aspect in task.data["aspects"]:
            assert set(task.data["preferences"][aspect]) <= listed[aspect]
            for option in task.data["catalogue"][aspect]:
                assert set(option) == {"id", "price"} | listed[aspect]
    with pytest.raises(ValueError, match="attributes must be a non-empty subset"):
        PreferencesEnv(num_aspects=1, aspects=["hotel"], attributes=["cuisine"])
    with pytest.raises(ValueError, match="prefs_per_aspect must be in 1..1"):
        PreferencesEnv(aspects=["hotel", "car"], attributes=["area", "pets", "type"], prefs_per_aspect=2)
    expert = [run_episode(env, ExpertPolicy(), t, seed=i)[1] for i, t in enumerate(env.tasks("test"))]
    assert sum(r.info["success"] for r in expert) / len(expert) >= 0.95


def test_by_value_layout_orders_one_option_per_value():
    env = PreferencesEnv(
        seed=2,
        num_aspects=1,
        prefs_per_aspect=1,
        num_options=4,
        num_acceptable=0,
        num_test=80,
        id_style="index",
        aspects=["hotel"],
        attributes=["area", "stars"],
        layout="by_value",
    )
    spec = ASPECTS["hotel"]
    for task in env.tasks("test"):
        ((attr, value),) = task.data["preferences"]["hotel"].items()
        options = task.data["catalogue"]["hotel"]
        assert [o[attr] for o in options] == list(spec.attributes[attr])  # every value once, in order
        position = spec.attributes[attr].index(value)
        assert task.data["best"]["hotel"] == options[position]["id"] == f"H{position + 1}"
    positions = {t.data["best"]["hotel"] for t in env.tasks("test")}
    assert positions == {"H1", "H2", "H3", "H4"}  # the answer moves with the preference
    expert = [run_episode(env, ExpertPolicy(), t, seed=i)[1] for i, t in enumerate(env.tasks("test"))]
    assert all(r.info["success"] for r in expert)
    with pytest.raises(ValueError, match="layout 'by_value'"):
        PreferencesEnv(num_aspects=1, prefs_per_aspect=1, num_acceptable=0, num_options=4, layout="by_value")
    with pytest.raises(ValueError, match="layout must be"):
        PreferencesEnv(layout="sorted")


def test_expert_choose_random_keeps_the_protocol_not_the_choice():
    env = small_env(num_test=60, num_aspects=1, num_options=4, num_acceptable=1)
    runs = [
        run_episode(env, ExpertPolicy(choose="random"), t, seed=i) for i, t in enumerate(env.tasks("test"))
    ]
    for messages, result in runs:
        names = [m.tool_calls[0].name for m in messages if m.role == "assistant" and m.tool_calls]
        asked = [m for m in messages if m.role == "assistant" and not m.tool_calls]
        assert asked and names[-1] == "recommend" and "search" in names and result.done
    success = sum(r.info["success"] for _, r in runs) / len(runs)
    assert 0.05 <= success <= 0.5  # chance (1 in 4), not the expert's >= 0.95
    with pytest.raises(ValueError, match="choose"):
        ExpertPolicy(choose="worst")


def test_tasks_deterministic_cached_and_split_disjoint():
    a, b = small_env(seed=7), small_env(seed=7)
    assert [to_dict(t) for t in a.tasks("test")] == [to_dict(t) for t in b.tasks("test")]
    assert [to_dict(t) for t in a.tasks("test")] != [to_dict(t) for t in small_env(seed=8).tasks("test")]
    assert a.fork().tasks("train") is a.tasks("train")  # forks share the cache
    assert a.tasks("test")[17].id == "pref-test-00017" and a.tasks("test")[17].split == "test"
    keys = {s: [task_signature(t) for t in a.tasks(s)] for s in ("train", "validation", "test")}
    assert not set(keys["train"]) & set(keys["test"])
    assert not set(keys["train"]) & set(keys["validation"])
    assert not set(keys["validation"]) & set(keys["test"])
    assert len(set(keys["train"])) == len(keys["train"])


def test_score_mean_over_aspects():
    task = small_env().tasks("test")[0]
    a, b = task.data["aspects"]
    best, ok = task.data["best"], task.data["acceptable"]
    wrong = next(
        o["id"]
        for o in task.data["catalogue"][b]
        if classify(task.data["catalogue"][b], task.data["preferences"][b], o["id"]) == "wrong"
    )
    assert score(task, {a: best[a], b: best[b]}) == 1.0
    assert score(task, {a: best[a], b: ok[b][0]}) == pytest.approx(0.9)
    assert score(task, {a: ok[a][0], b: ok[b][1]}) == pytest.approx(0.8)
    assert score(task, {a: best[a], b: wrong}) == pytest.approx(0.5)
    assert score(task, {a: best[a]}) == pytest.approx(0.5)
    assert score(task, {}) == 0.0


# --------------------------------------------------------------------------- hints and the user


def test_hints_are_indirect_unique_and_decodable():
    templates = [t for t, *_ in HINT_INDEX]
    assert len(set(templates)) == len(templates)
    for t in templates:
        assert not [v for v in ALL_VALUES if contains_value(t, v)], t  # never names a catalogue value
        assert [u for u in templates if t in u] == [t]  # no template hides inside another
    for aspect, attrs in HINTS.items():
        for attr, values in attrs.items():
            assert set(values) <= set(ASPECTS[aspect].attributes[attr])
            assert all(len(ts) >= 3 for ts in values.values())
            for value, ts in values.items():
                assert all(decode_hints("Well, let me see. " + t) == [(aspect, attr, value)] for t in ts)


def test_detect_aspects():
    assert detect_aspects("Which flights and hotels do you like? And dinner?") == [
        "flight",
        "hotel",
        "restaurant",
    ]
    assert detect_aspects("What about the rental car?", ["car"]) == ["car"]
    assert detect_aspects("Cartography is fun; scarf.") == []


def test_user_reveals_one_indirect_preference_per_ask():
    task = small_env(prefs_per_aspect=3).tasks("test")[1]
    a, b = task.data["aspects"]
    other = next(x for x in ASPECT_NAMES if x not in (a, b))
    user = PreferenceUser()
    greeting = user.reset(task, seed=5)
    assert a in greeting and b in greeting and decode_hints(greeting) == []
    said = [greeting]
    # Asking about an aspect the user does not need is off-topic, like small talk.
    said.append(user.respond(f"Do you need a {other}?"))
    assert decode_hints(said[-1]) == []
    for i in range(3):
        said.append(user.respond(f"Tell me about the {a}."))
        (hint,) = decode_hints(said[-1])
        assert hint[0] == a and (hint[1], hint[2]) == user.revealed[a][i]
        assert not any(p.search(said[-1]) for p in DONE_RES)
    assert sorted(user.revealed[a]) == sorted(task.data["preferences"][a].items())
    said.append(user.respond(f"Anything else for the {a}?"))
    assert decode_hints(said[-1]) == [] and any(p.search(said[-1]) for p in DONE_RES)
    assert user.revealed[b] == []
    said.append(user.respond(f"And the {b}? Also the {a}."))  # several topics: one hint, for the open one
    assert [h[0] for h in decode_hints(said[-1])] == [b]
    prefs = [v for aspect in (a, b) for v in task.data["preferences"][aspect].values()]
    assert not [v for v in prefs for s in said if contains_value(s, v)]


def test_user_volunteers_after_three_off_topic_turns():
    task = small_env().tasks("test")[2]
    user = PreferenceUser()
    user.reset(task, seed=0)
    replies = [user.respond(text) for text in ["Nice weather today.", "How are you?", "Tell me a joke."]]
    assert [len(decode_hints(r)) for r in replies] == [0, 0, 1]
    # The count starts over after volunteering, and an on-topic reply resets it too.
    a = task.data["aspects"][0]
    replies = [user.respond(t) for t in ["Hm.", "Ok.", f"About the {a}...", "Hm.", "Ok."]]
    assert [len(decode_hints(r)) for r in replies] == [0, 0, 1, 0, 0]
    assert len(decode_hints(user.respond("Right."))) == 1


def test_user_is_deterministic_given_seed():
    task = small_env().tasks("test")[3]
    a = task.data["aspects"][0]

    def talk(seed: int) -> list[str]:
        user = PreferenceUser()
        return [user.reset(task, seed)] + [user.respond(f"What about the {a}?") for _ in range(3)]

    assert talk(1) == talk(1)
    assert len({tuple(talk(s)) for s in range(6)}) > 1


# --------------------------------------------------------------------------- env steps


def test_reset_and_tools():
    env = small_env()
    task = env.tasks("test")[0]
    ep = env.fork()
    system, first = ep.reset(task, 0)
    assert system.role == "system" and first.role == "user"
    assert all(a in system.content and a in first.content for a in task.data["aspects"])
    assert decode_hints(system.content + first.content) == []
    aspect = task.data["aspects"][0]
    found = ep.step(Action("search", {"aspect": aspect.upper()}))
    payload = json.loads(found.messages[0].content)
    assert found.messages[0].role == "tool" and payload["options"] == task.data["catalogue"][aspect]
    assert not found.done and found.reward == 0.0 and "error" not in found.info
    reply = ep.step(Action.reply(f"What do you want for the {aspect}?"))
    assert reply.messages[0].role == "user" and len(decode_hints(reply.messages[0].content)) == 1


def test_recommend_replaces_and_final_reward():
    env = small_env()
    task = env.tasks("test")[4]
    a, b = task.data["aspects"]
    ep = env.fork()
    ep.reset(task, 0)
    wrong = next(
        o["id"]
        for o in task.data["catalogue"][a]
        if o["id"] not in task.data["acceptable"][a] + [task.data["best"][a]]
    )
    r = ep.step(Action("recommend", {"aspect": a, "option_id": wrong.lower()}))
    assert not r.done and r.reward == 0.0 and b in r.messages[0].content
    ep.step(Action("recommend", {"aspect": a, "option_id": task.data["best"][a]}))  # replaces the wrong one
    r = ep.step(Action("recommend", {"aspect": b, "option_id": task.data["acceptable"][b][0]}))
    assert r.done and r.reward == pytest.approx(0.9) and r.info["success"] is False
    assert r.info["outcomes"] == {a: "best", b: "acceptable"}
    again = ep.step(Action("search", {"aspect": a}))
    assert again.done and "error" in again.info

    ep.reset(task, 0)  # a fresh episode: nothing carried over
    ep.step(Action("recommend", {"aspect": a, "option_id": task.data["best"][a]}))
    r = ep.step(Action("recommend", {"aspect": b, "option_id": task.data["best"][b]}))
    assert r.done and r.reward == 1.0 and r.info["success"] is True


def test_max_turns_and_user_stop_end_the_episode():
    env = small_env(max_turns=3)
    task = env.tasks("test")[0]
    ep = env.fork()
    ep.reset(task, 0)
    rewards = [ep.step(Action.reply("Hello!")) for _ in range(3)]
    assert [r.done for r in rewards] == [False, False, True]
    assert rewards[-1].reward == 0.0 and rewards[-1].info["end_reason"] == "max_turns"
    ep.reset(task, 0)
    r = ep.step(Action.reply("Thanks, goodbye!"))
    assert r.done and r.info["end_reason"] == "user_stop" and "###" not in r.messages[0].content


BAD_ACTIONS = [
    None,
    "search",
    {"name": "search"},
    Action(None, {}),  # type: ignore[arg-type]
    Action("", {}),
    Action("search", None),  # type: ignore[arg-type]
    Action("search", ["hotel"]),  # type: ignore[arg-type]
    Action("search", {}),
    Action("search", {"aspect": None}),
    Action("search", {"aspect": 3}),
    Action("search", {"aspect": ["flight"]}),
    Action("search", {"aspect": "spaceship"}),
    Action("recommend", {}),
    Action("recommend", {"aspect": "flight"}),
    Action("recommend", {"option_id": "F100"}),
    Action("recommend", {"aspect": "{aspect}", "option_id": None}),
    Action("recommend", {"aspect": "{aspect}", "option_id": 123}),
    Action("recommend", {"aspect": "{aspect}", "option_id": "ZZZ"}),
    Action("recommend", {"aspect": "{aspect}", "option_id": {"id": 1}}),
    Action("respond", {}),
    Action("respond", {"content": None}),
    Action("respond", {"content": 5}),
    Action("book_flight", {"aspect": "flight"}),
    Action("DROP TABLE", {"x": float("nan")}),
]


def test_bad_actions_give_error_observations():
    env = small_env(max_turns=1000)
    task = env.tasks("test")[5]
    ep = env.fork()
    ep.reset(task, 0)
    absent = next(x for x in ASPECT_NAMES if x not in task.data["aspects"])
    for action in [*BAD_ACTIONS, Action("search", {"aspect": absent})]:
        if (
            isinstance(action, Action)
            and isinstance(action.kwargs, dict)
            and action.kwargs.get("aspect") == "{aspect}"
        ):
            action = Action(action.name, {**action.kwargs, "aspect": task.data["aspects"][0]})
        r = ep.step(action)  # type: ignore[arg-type]
        assert isinstance(r, StepResult) and "error" in r.info and not r.done, action
        assert r.messages[0].role == "tool" and r.messages[0].content.startswith("Error:")


def test_random_fuzz_never_raises():
    env = small_env(max_turns=60)
    rng = random.Random(0)
    junk = [None, 0, -1, 3.5, "", "flight", "hotel", "F101", "  Car ", [], {}, {"a": 1}, True, "x" * 500]
    for task in env.tasks("test")[:4]:
        ep = env.fork()
        ep.reset(task, rng.randrange(100))
        done = False
        for _ in range(80):
            name = rng.choice(["search", "recommend", "respond", "nope", None, 7])
            kwargs = {
                k: rng.choice(junk)
                for k in rng.sample(["aspect", "option_id", "content", "zz"], rng.randint(0, 4))
            }
            r = ep.step(Action(name, kwargs if rng.random() > 0.1 else rng.choice(junk)))  # type: ignore[arg-type]
            assert isinstance(r, StepResult) and all(isinstance(m.content, str) for m in r.messages)
            assert not (done and not r.done)  # once over, it stays over
            assert "error" not in r.info or len(r.messages[0].content) < 300  # junk is not echoed whole
            done = r.done
        assert done  # max_turns ended it at the latest


# --------------------------------------------------------------------------- scripted agents


def test_expert_policy_succeeds_and_random_does_not():
    env = small_env(num_test=50)
    expert = [run_episode(env, ExpertPolicy(), t, seed=i)[1] for i, t in enumerate(env.tasks("test"))]
    rand = [run_episode(env, RandomPolicy(), t, seed=i)[1] for i, t in enumerate(env.tasks("test"))]
    expert_success = sum(r.info["success"] for r in expert) / len(expert)
    assert expert_success >= 0.95 and all(
        r.reward == (1.0 if r.info["success"] else r.reward) for r in expert
    )
    assert sum(r.info["success"] for r in rand) / len(rand) <= 0.2
    assert sum(r.reward for r in rand) / len(rand) < 0.6 < sum(r.reward for r in expert) / len(expert)


def test_expert_never_reads_the_task_and_runs_through_a_backend():
    env = small_env()
    task = env.tasks("test")[6]
    backend = ScriptedBackend(policy=ExpertPolicy())
    backend.start("k", Task(id="decoy"))  # the expert must not depend on the task it is given
    ep = env.fork()
    messages = ep.reset(task, 3)
    for _ in range(env.max_turns):
        (c,) = backend.complete([messages], env.tool_schemas, keys=["k"], seeds=[3])
        r = ep.step(c.action)
        messages = [*messages, c.action.to_message(text=c.text), *r.messages]
        if r.done:
            break
    assert r.done and r.info["success"]


def test_scripted_episode_is_deterministic():
    env = small_env()
    task = env.tasks("validation")[0]
    m1, r1 = run_episode(env, ExpertPolicy(), task, seed=11)
    m2, r2 = run_episode(small_env(), ExpertPolicy(), small_env().tasks("validation")[0], seed=11)
    assert [to_dict(m) for m in m1] == [to_dict(m) for m in m2] and r1 == r2


def test_forks_keep_separate_episodes():
    env = small_env()
    t1, t2 = env.tasks("test")[:2]
    e1, e2 = env.fork(), env.fork()
    e1.reset(t1, 0)
    e2.reset(t2, 0)
    a1 = t1.data["aspects"][0]
    e1.step(Action("recommend", {"aspect": a1, "option_id": t1.data["best"][a1]}))
    r2 = e2.step(Action("search", {"aspect": t2.data["aspects"][0]}))
    assert (
        not r2.done
        and json.loads(r2.messages[0].content)["options"] == t2.data["catalogue"][t2.data["aspects"][0]]
    )


class VagueUser:
    """A user whose words match no hint template, as an LLM user's may not."""

    def reset(self, task: Task, seed: int = 0) -> str:
        return "Hi, I need a few things sorted out."

    def respond(self, agent_text: str) -> str:
        return "I just want something nice."


def test_expert_stops_asking_a_user_it_cannot_decode():
    env = small_env(user=VagueUser())
    task = env.tasks("test")[7]
    messages, result = run_episode(env, ExpertPolicy(), task)
    asks = [m for m in messages if m.role == "assistant" and "<tool_call>" not in (m.content or "")]
    assert result.info["end_reason"] == "all_recommended" and len(asks) == len(task.data["aspects"])
