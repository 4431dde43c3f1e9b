"""`TauBenchEnv`: an installed τ-bench (`tau_bench` package) behind our `MultiTurnEnv` protocol.

τ-bench is imported lazily, so this module always imports. We rely on its public pieces:
``get_env(env_name, user_strategy, user_model, task_split, user_provider, task_index)``,
an env's ``tasks``, ``wiki``, ``tools_info``, ``reset(task_index)``, ``step(Action)``,
``user`` (an object with ``reset``/``step``/``get_total_cost``), ``calculate_reward()``
and ``get_data_hash()``. Reward is τ-bench's own.

How we use it, and why:
  * one τ-bench env per split is built once, with the non-LLM ``human`` user and
    ``task_index=0``, to list tasks and tool schemas: τ-bench's LLM user calls its model when
    it is built, and ``get_env`` without ``task_index`` draws an inclusive ``randint`` that
    is out of range about once per ``len(tasks) + 1`` builds;
  * each episode runs on a shallow copy of that env: τ-bench's ``reset(task_index)`` reloads
    the database and the action log, and we put the episode's user in ``env.user``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from lightning_asym.envs.base import MultiTurnEnv, StepResult, error_result, fits_tools, register_env
from lightning_asym.envs.retail.examples import REVIEW_EXAMPLES as RETAIL_EXAMPLES
from lightning_asym.envs.tau_bench import judge
from lightning_asym.envs.tau_bench.loader import (
    LITELLM_HINT,
    LLM_STRATEGIES,
    TAU_SPLITS,
    import_tau_bench,
    litellm_available,
    tau_split,
)
from lightning_asym.envs.tau_bench.plan import agent_plan
from lightning_asym.envs.tau_bench.reward import RESPOND, db_digest, gold_digest, reward_result
from lightning_asym.envs.tau_bench.users import TauScriptedUser, UserBridge
from lightning_asym.envs.users import UserSimulator, split_stop
from lightning_asym.types import Action, Message, ReviewExample, Task

USER_STRATEGIES = ("scripted", "human", *LLM_STRATEGIES)


@register_env("tau_bench")
class TauBenchEnv(MultiTurnEnv):
    """A τ-bench domain (``retail`` or ``airline``) behind our env protocol.

    Args:
        env_name: τ-bench's domain name.
        user: who plays the user. A `UserSimulator` prototype, copied per episode
            (`TauLLMUser`: τ-bench's LLM user behind any OpenAI-compatible endpoint, with its
            model, base_url, api_key_env, max_tokens and temperature; `TauScriptedUser`: no
            model), or one of τ-bench's own strategies by name: ``llm``, ``react``, ``verify``,
            ``reflection`` (litellm, with `user_model` and `user_provider`), ``human`` (stdin),
            or ``scripted`` (a `TauScriptedUser`).
        user_model, user_provider: the model and litellm provider of τ-bench's own LLM users.
        max_turns: agent steps before the engine cuts the episode (τ-bench's runner uses 30).
        splits: our split name -> τ-bench `task_split` (default: the domain's, see `loader.TAU_SPLITS`).
    """

    def __init__(
        self,
        env_name: str = "retail",
        user: str | UserSimulator = "llm",
        user_model: str = "gpt-4o",
        user_provider: str | None = "openai",
        max_turns: int = 30,
        splits: dict[str, str] | None = None,
    ) -> None:
        if isinstance(user, str) and user not in USER_STRATEGIES:
            raise ValueError(
                f"data.init_args.env.init_args.user must be one of {USER_STRATEGIES} or a UserSimulator, got {user!r}"
            )
        if not isinstance(user, str) and not isinstance(user, UserSimulator):
            raise ValueError(
                f"data.init_args.env.init_args.user: {user!r} has no reset(task, seed) and respond(text)"
            )
        if splits is None and env_name not in TAU_SPLITS:
            raise ValueError(
                f"data.init_args.env.init_args.env_name: no split map for tau-bench domain {env_name!r} "
                f"(known: {sorted(TAU_SPLITS)}); give `splits` (our name -> τ-bench's task_split)"
            )
        if max_turns < 1:
            raise ValueError(f"data.init_args.env.init_args.max_turns must be >= 1, got {max_turns}")
        self.env_name = env_name
        self.name = f"tau_bench-{env_name}"
        self.user = user
        self.user_model = user_model
        self.user_provider = user_provider
        self.max_turns = max_turns
        self.splits = dict(TAU_SPLITS[env_name] if splits is None else splits)
        self._protos: dict[
            str, Any
        ] = {}  # τ-bench's task_split -> an env for tasks and schemas (shared by forks)
        self._tasks: dict[str, list[Task]] = {}
        self._gold_digests: dict[tuple[str, int], str] = {}  # shared by forks on purpose
        self._env: Any = None
        self._tau_types: Any = None
        self._task: Task | None = None
        self._done = False

    # ------------------------------------------------------------------ τ-bench access

    def _proto(self, split: str) -> Any:
        ts = tau_split(self.env_name, self.splits, split)
        if ts not in self._protos:
            envs, _ = import_tau_bench()
            self._protos[ts] = envs.get_env(
                env_name=self.env_name,
                user_strategy="human",  # builds no model; the episode's user is put in at reset
                user_model=self.user_model,
                task_split=ts,
                user_provider=None,
                task_index=0,  # never let τ-bench draw one: its randint is inclusive
            )
        return self._protos[ts]

    def _make_user(self, task: Task, seed: int) -> Any:
        user = self.user
        if isinstance(user, str) and user in LLM_STRATEGIES:
            if not litellm_available():
                raise ImportError(LITELLM_HINT)
            from tau_bench.envs.user import load_user

            return load_user(user_strategy=user, model=self.user_model, provider=self.user_provider)
        if user == "human":
            from tau_bench.envs.user import load_user

            return load_user(user_strategy="human")
        ours = TauScriptedUser() if user == "scripted" else copy.copy(user)
        return UserBridge(ours, task, seed)

    # ------------------------------------------------------------------ protocol

    def tasks(self, split: str) -> list[Task]:
        if split not in self._tasks:
            env = self._proto(split)
            self._tasks[split] = [
                self._task_of(split, i, t, getattr(env, "data", None)) for i, t in enumerate(env.tasks)
            ]
        return self._tasks[split]

    def _task_of(self, split: str, index: int, t: Any, data: Any = None) -> Task:
        gold = [Action(a.name, dict(a.kwargs)) for a in getattr(t, "actions", [])]
        gold, added = judge.complete_plan(self.env_name, gold, getattr(t, "user_id", ""), data)
        outputs = [str(o) for o in getattr(t, "outputs", [])]
        privileged = "\n".join(
            [
                f"User goal: {t.instruction}",
                "Gold actions:",
                # as the critic sees a proposed call (review.format.render_action), like retail's
                *[f"- {a.name}({json.dumps(a.kwargs, sort_keys=True)})" for a in gold],
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
            data={
                "task_index": index,
                "tau_split": self.splits[split],
                "user_id": getattr(t, "user_id", ""),
                "reads_added": added,  # lookups put before writes (see judge.complete_plan)
                # what a plan-following actor (our noisy oracle) needs: the steps, and real wrong
                # values for each write from τ-bench's database (see plan.py)
                **agent_plan(self.env_name, gold, getattr(t, "user_id", ""), data),
            },
        )

    @property
    def tool_schemas(self) -> list[dict[str, Any]]:
        env = self._env if self._env is not None else self._proto(next(iter(self.splits)))
        return copy.deepcopy(list(env.tools_info))

    def corpus(self, num_tasks: int = 200) -> list[str]:
        """The default corpus (gold actions, scripted user) on the train split, or on the first
        split there is (airline has a test split only)."""
        if self.user != "scripted":  # the corpus must never call a user model
            view = copy.copy(self)
            view.user = "scripted"
            return view.corpus(num_tasks)
        if "train" in self.splits:
            return super().corpus(num_tasks)
        # airline: the first split there is stands in for train (the tokenizer sees its gold episodes)
        view = copy.copy(self)
        view.splits = {**self.splits, "train": self.splits[next(iter(self.splits))]}
        view._tasks = {}
        return view.corpus(num_tasks)

    def reset(self, task: Task, seed: int = 0) -> list[Message]:
        env = copy.copy(self._proto(task.split))  # per-episode state is rebuilt by reset below
        self._tau_types = import_tau_bench()[1]
        env.user = self._make_user(task, seed)
        env.calculate_reward = self._calculate_reward  # records the database match separately
        self._env = env
        self._task = task
        self._done = False
        self._turns = 0
        self._reward_parts: dict[str, Any] = {}
        self._remaining = [a for a in task.gold_actions if not a.is_reply]
        self._history: list[Action] = []
        res = env.reset(task_index=task.data["task_index"])
        first, _ = split_stop(str(res.observation))
        return [Message("system", content=str(env.wiki)), Message("user", content=first)]

    def close(self) -> None:
        close = getattr(getattr(self._env, "user", None), "close", None)
        if close is not None:
            close()

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
            result = self._apply(action)
        if not result.done and self._turns >= self.max_turns:
            # a cut, not an end: `done` stays False, so the engine (whose max_turns defaults to
            # ours) records the episode as truncated; no reward is computed for a cut episode
            result.info["truncated"] = True
            result.info["success"] = False
        self._done = result.done
        return result

    def _apply(self, action: Action) -> StepResult:
        judgement = self.check_action(action)
        try:
            res = self._env.step(self._tau_types.Action(name=action.name, kwargs=dict(action.kwargs)))
        except Exception as e:  # τ-bench raises on some bad arguments; the contract says never raise
            result = error_result(f"{type(e).__name__}: {e}")
        else:
            result = self._result(action, res)
        result.info.update(judgement or {})
        if not action.is_reply:
            if "error" not in result.info:  # a failed lookup authenticates nobody
                self._history.append(action)
            # the first gold call it matches is done (a read the agent skipped must not block the rest)
            done = next((i for i, g in enumerate(self._remaining) if judge.same_call(action, g)), None)
            if done is not None:
                self._remaining.pop(done)
        return result

    def _calculate_reward(self) -> Any:
        """τ-bench's reward, with the gold database computed once per task.

        τ-bench's own `calculate_reward` reloads the database, replays the gold actions and
        hashes both databases at the end of every episode: most of a noisy-oracle episode's
        time (`tools/bench_tau_reward.py`). Here the gold database's digest is kept per task
        (`gold_digest`), and each episode digests its own database once. The reward is
        τ-bench's rule: 1 when the database matches the gold one and every required output was
        said in a reply (case-insensitive, commas dropped), else 0. Tests check it against
        τ-bench's own reward on the same final databases.
        """
        env = self._env
        key = (self.splits[self._task.split], self._task.data["task_index"])
        if key not in self._gold_digests:
            self._gold_digests[key] = gold_digest(env)
        db_match = db_digest(env.data) == self._gold_digests[key]
        said = [
            str(a.kwargs.get("content", "")).lower().replace(",", "")
            for a in env.actions
            if a.name == RESPOND
        ]
        outputs = {str(o): any(str(o).lower() in s for s in said) for o in env.task.outputs}
        reward = float(db_match and all(outputs.values()))
        self._reward_parts = {"reward": reward, "db_match": db_match, "outputs": outputs}
        return reward_result(reward, db_match, outputs, env.actions, self._tau_types)

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
        if done:  # τ-bench ends on the same STOP token, so it has computed the reward
            info["success"] = reward >= 1.0
            info["reward_info"] = dict(self._reward_parts)
        return StepResult([msg], reward, done, info)

    # ------------------------------------------------------------------ judgement

    def plan(self) -> list[Action] | None:
        """The gold tool calls not yet made, in order (None before `reset`)."""
        remaining = getattr(self, "_remaining", None)
        return list(remaining) if remaining is not None else None

    def review_examples(self) -> tuple[ReviewExample, ...]:
        """τ-bench retail reuses our retail domain's worked reviews (`envs/retail/examples.py`): its
        policy also asks to authenticate the user first, and the examples are kept only if its tools
        take their calls (`fits_tools`: same names and arguments). None for other domains (airline)."""
        if self.env_name == "retail" and fits_tools(RETAIL_EXAMPLES, self.tool_schemas):
            return RETAIL_EXAMPLES
        return ()

    def check_action(self, action: Action | None) -> dict[str, Any] | None:
        """Against the gold plan and the domain's policy rules (see `judge.judge_action`)."""
        if getattr(self, "_task", None) is None or self.env_name not in judge.WRITE_TOOLS:
            return None  # before reset, or a domain whose write tools we do not know
        return judge.judge_action(self.env_name, action, self._remaining, self._history, self._task)
