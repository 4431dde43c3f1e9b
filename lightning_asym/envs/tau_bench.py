"""An adapter that runs an installed tau-bench (`tau_bench` package) as a `MultiTurnEnv`.

tau-bench is imported lazily, on first use, so this module always imports. Its documented
API is all we rely on: ``get_env(env_name, user_strategy, user_model, task_split,
user_provider)`` builds an env with ``tasks`` (each with ``instruction``, ``actions``,
``outputs``, ``user_id``), ``wiki`` (the policy), ``tools_info`` (OpenAI schemas),
``reset(task_index)`` returning ``observation`` and ``info``, and ``step(Action(name,
kwargs))`` returning ``observation``, ``reward``, ``done`` and ``info``; a reply to the
user is the action ``respond`` with ``content``. Reward and the user simulator are
tau-bench's own (its LLM user needs that provider's API key).
"""

from __future__ import annotations

import importlib
from typing import Any

from lightning_asym.envs.base import MultiTurnEnv, StepResult, error_result, register_env
from lightning_asym.envs.users import split_stop
from lightning_asym.types import Action, Message, Task

INSTALL_HINT = (
    "tau-bench is not installed. Install it with `pip install git+https://github.com/sierra-research/tau-bench` "
    "(and set the API key of the user model's provider, e.g. OPENAI_API_KEY)."
)
SPLIT_NAMES = {"train": "train", "validation": "dev", "test": "test"}
"""Our split names -> tau-bench's `task_split` values."""


def _import_tau_bench() -> tuple[Any, Any]:
    """`(tau_bench.envs, tau_bench.types)`, or an ImportError that says how to install it."""
    try:
        envs = importlib.import_module("tau_bench.envs")
        types = importlib.import_module("tau_bench.types")
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from e
    return envs, types


@register_env("tau_bench")
class TauBenchEnv(MultiTurnEnv):
    """A tau-bench domain (``retail`` or ``airline``) behind our env protocol.

    Args:
        env_name: tau-bench's domain name.
        user_strategy, user_model, user_provider: tau-bench's user simulator settings.
        max_turns: agent steps before the episode is cut (tau-bench's runner uses 30).
        splits: our split name -> tau-bench `task_split` (default: validation -> dev).
    """

    def __init__(
        self,
        env_name: str = "retail",
        user_strategy: str = "llm",
        user_model: str = "gpt-4o",
        user_provider: str | None = "openai",
        max_turns: int = 30,
        splits: dict[str, str] | None = None,
    ) -> None:
        self.env_name = env_name
        self.name = f"tau_bench-{env_name}"
        self.user_strategy = user_strategy
        self.user_model = user_model
        self.user_provider = user_provider
        self.max_turns = max_turns
        self.splits = dict(SPLIT_NAMES if splits is None else splits)
        self._protos: dict[str, Any] = {}  # one tau-bench env per split, for its tasks and schemas
        self._tasks: dict[str, list[Task]] = {}
        self._env: Any = None
        self._tau_types: Any = None
        self._task: Task | None = None
        self._done = False

    # ------------------------------------------------------------------ tau-bench access

    def _make(self, split: str) -> Any:
        envs, types = _import_tau_bench()
        self._tau_types = types
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r}; expected one of {sorted(self.splits)}")
        return envs.get_env(
            env_name=self.env_name,
            user_strategy=self.user_strategy,
            user_model=self.user_model,
            task_split=self.splits[split],
            user_provider=self.user_provider,
        )

    def _proto(self, split: str) -> Any:
        if split not in self._protos:
            self._protos[split] = self._make(split)
        return self._protos[split]

    # ------------------------------------------------------------------ protocol

    def tasks(self, split: str) -> list[Task]:
        if split not in self._tasks:
            env = self._proto(split)
            self._tasks[split] = [self._task_of(split, i, t) for i, t in enumerate(env.tasks)]
        return self._tasks[split]

    def _task_of(self, split: str, index: int, t: Any) -> Task:
        gold = [Action(a.name, dict(a.kwargs)) for a in getattr(t, "actions", [])]
        outputs = [str(o) for o in getattr(t, "outputs", [])]
        privileged = "\n".join(
            [
                f"User goal: {t.instruction}",
                "Gold actions:",
                *[f"- {a.name}({a.kwargs})" for a in gold],
                f"Required outputs: {', '.join(outputs) if outputs else 'none'}",
            ]
        )
        return Task(
            id=f"{self.name}-{split}-{index:04d}",
            split=split,
            instruction=t.instruction,
            gold_actions=gold,
            required_outputs=outputs,
            privileged=privileged,
            data={"task_index": index, "tau_split": self.splits[split], "user_id": getattr(t, "user_id", "")},
        )

    @property
    def tool_schemas(self) -> list[dict[str, Any]]:
        env = (
            self._env if self._env is not None else self._proto("test" if "test" in self.splits else "train")
        )
        return list(env.tools_info)

    def reset(self, task: Task, seed: int = 0) -> list[Message]:
        # a fresh tau-bench env per episode: its env holds the database, the user and the action log
        self._env = self._make(task.split)
        self._task = task
        self._done = False
        self._turns = 0
        res = self._env.reset(task_index=task.data["task_index"])
        first, _ = split_stop(str(res.observation))
        return [Message("system", content=str(self._env.wiki)), Message("user", content=first)]

    def step(self, action: Action) -> StepResult:
        if self._env is None:
            return error_result("step called before reset")
        if self._done:
            return StepResult([], 0.0, True, {"error": "the episode is over"})
        self._turns += 1  # every agent step counts, malformed or not
        if (
            not isinstance(action, Action)
            or not isinstance(action.name, str)
            or not isinstance(action.kwargs, dict)
        ):
            result = error_result(f"malformed action {action!r}")
        else:
            try:
                res = self._env.step(self._tau_types.Action(name=action.name, kwargs=dict(action.kwargs)))
            except Exception as e:  # tau-bench raises on some bad arguments; the contract says never raise
                result = error_result(f"{type(e).__name__}: {e}")
            else:
                result = self._result(action, res)
        if not result.done and self._turns >= self.max_turns:
            result.done = True
            result.info["truncated"] = True
            result.info.setdefault("success", False)
        self._done = result.done
        return result

    def _result(self, action: Action, res: Any) -> StepResult:
        obs = str(res.observation)
        info: dict[str, Any] = {}
        stop = False
        if action.is_reply:
            text, stop = split_stop(obs)
            msg = Message("user", content=text)
        else:
            msg = Message("tool", content=obs, name=action.name)
            if obs.startswith("Error") or obs.startswith("Unknown action"):
                info["error"] = obs
        done = bool(res.done) or stop
        reward = float(res.reward or 0.0)
        if done:
            info["success"] = reward >= 1.0
            reward_info = getattr(getattr(res, "info", None), "reward_info", None)
            if reward_info is not None:
                info["reward_info"] = str(reward_info)
        return StepResult([msg], reward, done, info)
