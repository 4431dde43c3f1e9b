"""`PreferencesEnv`: find what a user wants by asking, then recommend the best option per aspect."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from lightning_asym.envs.base import SPLITS, MultiTurnEnv, StepResult, error_result, register_env
from lightning_asym.envs.preferences.domain import ASPECT_NAMES, ASPECTS, SCORES, classify
from lightning_asym.envs.preferences.examples import REVIEW_EXAMPLES
from lightning_asym.envs.preferences.generate import GenConfig, generate_split, task_signature
from lightning_asym.envs.preferences.user import PreferenceUser
from lightning_asym.envs.users import UserSimulator, split_stop
from lightning_asym.types import RESPOND, Action, Message, ReviewExample, Task

POLICY = """You are a helpful travel-planning assistant.
Aspects to plan: {aspects}.
The user has preferences about each aspect that they have not told you. They share one at a
time, only when you ask about that aspect, and often indirectly: work out what they mean.
For each aspect: ask about it until the user says that is all they care about; call
search(aspect) to see the options; then call recommend(aspect, option_id) with the cheapest
option that meets every preference. A later recommendation for an aspect replaces the earlier
one. The conversation ends once every aspect has a recommendation."""

TOOL_SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "List every option of one aspect as JSON: id, attributes and price.",
            "parameters": {
                "type": "object",
                "properties": {"aspect": {"type": "string", "enum": list(ASPECT_NAMES)}},
                "required": ["aspect"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "recommend",
            "description": "Recommend one option (by id) for an aspect; replaces an earlier recommendation.",
            "parameters": {
                "type": "object",
                "properties": {
                    "aspect": {"type": "string", "enum": list(ASPECT_NAMES)},
                    "option_id": {"type": "string", "description": "An id returned by search."},
                },
                "required": ["aspect", "option_id"],
            },
        },
    },
]


@dataclass
class _Episode:
    task: Task
    user: UserSimulator
    recommendations: dict[str, str] = field(default_factory=dict)
    turns: int = 0
    done: bool = False


@register_env("preferences")
class PreferencesEnv(MultiTurnEnv):
    """A UserBench-like domain: a simulated user with hidden, indirectly voiced preferences.

    `user` is `"scripted"` (the deterministic `PreferenceUser`) or any `UserSimulator`
    instance, which is shallow-copied for each episode. Difficulty knobs: `num_aspects`,
    `prefs_per_aspect`, `num_options`, `num_acceptable`, `max_turns`, `id_style` (`random`
    catalogue ids or `index` ids), `aspects` (the aspects tasks draw from; default all),
    `attributes` (the attributes preferences are drawn from and `search` lists; default all)
    and `layout` (`shuffled` options, or `by_value`: one option per value of the preferred
    attribute in a fixed order, so the choice rests on understanding the hint alone).
    """

    name = "preferences"

    def __init__(
        self,
        seed: int = 0,
        num_aspects: int = 2,
        prefs_per_aspect: int = 2,
        num_options: int = 8,
        num_acceptable: int = 2,
        max_turns: int = 12,
        num_train: int = 5000,
        num_validation: int = 200,
        num_test: int = 200,
        user: str | UserSimulator = "scripted",
        id_style: str = "random",
        aspects: list[str] | None = None,
        attributes: list[str] | None = None,
        layout: str = "shuffled",
    ) -> None:
        self.seed = seed
        pool = tuple(aspects) if aspects else ASPECT_NAMES
        attrs = tuple(attributes) if attributes else None
        self.config = GenConfig(
            num_aspects, prefs_per_aspect, num_options, num_acceptable, id_style, pool, attrs, layout
        )
        self.config.validate()
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        self.max_turns = max_turns
        self.sizes = {"train": num_train, "validation": num_validation, "test": num_test}
        if any(n < 0 for n in self.sizes.values()):
            raise ValueError(f"split sizes must be >= 0, got {self.sizes}")
        if not (user == "scripted" if isinstance(user, str) else isinstance(user, UserSimulator)):
            raise ValueError(f'user must be "scripted" or a UserSimulator instance, got {user!r}')
        self.user = user
        self._cache: dict[str, list[Task]] = {}  # shared by forks: tasks are read-only
        self._episode: _Episode | None = None

    # ------------------------------------------------------------------ tasks

    def tasks(self, split: str) -> list[Task]:
        if split not in self.sizes:
            raise KeyError(f"unknown split {split!r}; splits are {list(SPLITS)}")
        if split not in self._cache:
            # Held-out splits come first: a train task may never repeat one of them.
            exclude: set[tuple] = set()
            for other in SPLITS[SPLITS.index(split) + 1 :]:
                exclude.update(task_signature(t) for t in self.tasks(other))
            self._cache[split] = generate_split(self.seed, split, self.sizes[split], self.config, exclude)
        return self._cache[split]

    @property
    def tool_schemas(self) -> list[dict[str, Any]]:
        return copy.deepcopy(TOOL_SCHEMAS)

    def review_examples(self) -> tuple[ReviewExample, ...]:
        """A recommendation before asking (revise) and a search once the aspect is told (approve)."""
        return REVIEW_EXAMPLES

    # ------------------------------------------------------------------ episode

    def reset(self, task: Task, seed: int = 0) -> list[Message]:
        self.close()  # a previous episode on this object may still hold backend state
        user: UserSimulator = PreferenceUser() if isinstance(self.user, str) else copy.copy(self.user)
        first, _ = split_stop(user.reset(task, seed))
        self._episode = _Episode(task=task, user=user)
        policy = POLICY.format(aspects=", ".join(task.data["aspects"]))
        return [Message("system", policy), Message("user", first)]

    def step(self, action: Action) -> StepResult:
        ep = self._episode
        if ep is None:
            raise RuntimeError("PreferencesEnv.step called before reset")
        if ep.done:
            msg = "the episode is over"
            return StepResult([Message("tool", f"Error: {msg}")], 0.0, True, {"error": msg})
        ep.turns += 1
        result = self._dispatch(ep, action)
        if not result.done and ep.turns >= self.max_turns:
            result = self._finish(ep, result, "max_turns")
        return result

    def corpus(self, num_tasks: int = 200) -> list[str]:
        """The default corpus plus expert episodes, so the user's hints and questions are in it."""
        import random

        from lightning_asym.backends.toolcalls import parse_action
        from lightning_asym.envs.preferences.policies import ExpertPolicy

        texts = super().corpus(num_tasks)
        expert = ExpertPolicy()
        for i, task in enumerate(self.tasks("train")[:num_tasks]):
            env = self.fork()
            messages = env.reset(task, seed=i)
            for turn in range(self.max_turns):
                text = expert(messages, None, random.Random(i * 1000 + turn))
                action, _ = parse_action(text)
                if action is None:
                    break
                result = env.step(action)
                messages = [*messages, action.to_message(text=text), *result.messages]
                texts += [text, *(m.content or "" for m in result.messages)]
                if result.done:
                    break
            env.close()
        return [t for t in texts if t]

    def close(self) -> None:
        """Let the episode's user drop backend state (an `LLMUser`'s KV cache); idempotent."""
        close = getattr(self._episode.user, "close", None) if self._episode is not None else None
        if callable(close):
            close()

    def _dispatch(self, ep: _Episode, action: Any) -> StepResult:
        if not isinstance(action, Action) or not isinstance(action.name, str):
            return error_result(f"malformed action {_short(action)}; reply to the user or call a tool")
        if not isinstance(action.kwargs, dict):
            return error_result(
                f"the arguments of {_short(action.name)} must be a JSON object, got {_short(action.kwargs)}"
            )
        if action.name == RESPOND:
            return self._respond(ep, action.kwargs)
        if action.name == "search":
            return self._search(ep, action.kwargs)
        if action.name == "recommend":
            return self._recommend(ep, action.kwargs)
        return error_result(f"unknown tool {_short(action.name)}; the tools are search and recommend")

    def _respond(self, ep: _Episode, kwargs: dict[str, Any]) -> StepResult:
        content = kwargs.get("content")
        if not isinstance(content, str):
            return error_result(f"a reply needs a string 'content', got {_short(content)}")
        text, stop = split_stop(ep.user.respond(content))
        result = StepResult([Message("user", text)])
        return self._finish(ep, result, "user_stop") if stop else result

    def _aspect(self, ep: _Episode, kwargs: dict[str, Any]) -> tuple[str | None, str | None]:
        """`(aspect, None)` for a valid `aspect` argument, else `(None, error)`."""
        aspects = ep.task.data["aspects"]
        raw = kwargs.get("aspect")
        if not isinstance(raw, str):
            return None, f"'aspect' must be a string, one of {aspects}; got {_short(raw)}"
        aspect = raw.strip().lower()
        if aspect not in aspects:
            return None, f"unknown aspect {_short(raw)}; this user needs: {', '.join(aspects)}"
        return aspect, None

    def _search(self, ep: _Episode, kwargs: dict[str, Any]) -> StepResult:
        aspect, err = self._aspect(ep, kwargs)
        if aspect is None:
            return error_result(str(err))
        payload = {
            "aspect": aspect,
            "price_unit": ASPECTS[aspect].price_unit,
            "options": ep.task.data["catalogue"][aspect],
        }
        return StepResult([Message("tool", json.dumps(payload), name="search")])

    def _recommend(self, ep: _Episode, kwargs: dict[str, Any]) -> StepResult:
        aspect, err = self._aspect(ep, kwargs)
        if aspect is None:
            return error_result(str(err))
        raw = kwargs.get("option_id")
        if not isinstance(raw, str):
            return error_result(f"'option_id' must be a string id from search, got {_short(raw)}")
        ids = {o["id"].upper(): o["id"] for o in ep.task.data["catalogue"][aspect]}
        option_id = ids.get(raw.strip().upper())
        if option_id is None:
            return error_result(f"no option {_short(raw)} for the {aspect}; call search to see the ids")
        ep.recommendations[aspect] = option_id
        left = [a for a in ep.task.data["aspects"] if a not in ep.recommendations]
        text = f"Recommended {option_id} for the {aspect}."
        text += f" Still to recommend: {', '.join(left)}." if left else " Every aspect has a recommendation."
        result = StepResult([Message("tool", text, name="recommend")])
        return result if left else self._finish(ep, result, "all_recommended")

    def _finish(self, ep: _Episode, result: StepResult, reason: str) -> StepResult:
        """End the episode: the reward is the mean aspect score (best 1, acceptable 0.8, else 0)."""
        ep.done = True
        kinds = outcomes(ep.task, ep.recommendations)
        reward = score(ep.task, ep.recommendations)
        self.close()
        info = {
            **result.info,
            "success": all(k == "best" for k in kinds.values()),
            "outcomes": kinds,
            "recommendations": dict(ep.recommendations),
            "end_reason": reason,
        }
        return StepResult(result.messages, reward, True, info)


def outcomes(task: Task, recommendations: dict[str, str]) -> dict[str, str]:
    """Each aspect's outcome (`best`, `acceptable`, `wrong` or `missing`) for `{aspect: option_id}`."""
    data = task.data
    return {
        a: classify(data["catalogue"][a], data["preferences"][a], recommendations.get(a))
        for a in data["aspects"]
    }


def score(task: Task, recommendations: dict[str, str]) -> float:
    """The episode reward `recommendations` earn: mean over aspects of 1 (best), 0.8 (acceptable), else 0."""
    kinds = outcomes(task, recommendations)
    return sum(SCORES[k] for k in kinds.values()) / len(kinds)


def _short(value: Any, limit: int = 80) -> str:
    """A repr of agent-provided data, cut so an error observation stays short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
