"""`RetailEnv`: a tau-bench-shaped customer-service domain with a procedural database.

Reward follows tau-bench: 1 iff the final database hash equals the hash obtained by
replaying the gold actions on a fresh database, and every required output appears
(case-insensitive, commas removed) in some reply to the user. The episode ends when the
user says ``###STOP###``, on a transfer to a human agent, or after `max_turns` agent steps.

Every step's `info` carries the env's own judgement of the action, for scoring critics:
`deviation` (a write, transfer or unknown tool that no remaining gold action matches, or a
reply that states a dollar amount nothing in the episode supports), `rule` (the id of the
policy rule broken, from `policy.RULES`, or None) and `violation` (what was done, in prose).
A made-up amount also lists the amounts under `unsupported`. The labeler keys its feedback on
`rule`; `violation` is for people. Reads and other replies never deviate; a reply that claims
work that was not done is not detected (free text), so critics catching it look worse.
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any, NamedTuple

from lightning_asym.envs.base import MultiTurnEnv, StepResult, error_result, register_env
from lightning_asym.envs.retail.db import DB, db_hash, generate_db
from lightning_asym.envs.retail.examples import REVIEW_EXAMPLES
from lightning_asym.envs.retail.policy import (
    AUTHENTICATE_FIRST,
    EXPLICIT_CONFIRMATION,
    NO_MADE_UP_FACTS,
    NO_NEEDLESS_TRANSFER,
    OWN_DATA_ONLY,
    POLICY,
    says_yes,
)
from lightning_asym.envs.retail.tasks import SPLITS, copy_db, make_tasks
from lightning_asym.envs.retail.tools import (
    PRIVATE_READS,
    TOOL_SCHEMAS,
    TOOLS,
    TRANSFER,
    WRITE_TOOLS,
    run_tool,
)
from lightning_asym.envs.retail.user import ScriptedRetailUser
from lightning_asym.envs.users import UserSimulator, split_stop
from lightning_asym.types import Action, Message, ReviewExample, Task

_AMOUNT_RE = re.compile(r"\$\s?(\d[\d,]*\.\d\d)\b")


def amounts(text: str) -> set[str]:
    """Dollar amounts with cents stated in `text`, normalized like "1234.50"."""
    return {f"{float(a.replace(',', '')):.2f}" for a in _AMOUNT_RE.findall(text)}


def db_amounts(db: DB) -> set[str]:
    """Every amount the database supports: prices, order totals, payments, differences, balances."""
    out: set[float] = set()
    for p in db["products"].values():
        out.update(v["price"] for v in p["variants"].values())
    for o in db["orders"].values():
        out.update(i["price"] for i in o["items"])
        out.add(sum(i["price"] for i in o["items"]))
        out.update(p["amount"] for p in o["payment_history"])
        out.add(abs(o.get("exchange_price_difference", 0.0)))
    for u in db["users"].values():
        out.update(p["balance"] for p in u["payment_methods"].values() if "balance" in p)
    return {f"{x:.2f}" for x in out}


@functools.lru_cache(maxsize=16)
def _tasks(split: str, n: int, seed: int) -> tuple[Task, ...]:
    return tuple(make_tasks(split, n, seed))


def gold_db(task: Task) -> DB:
    """A fresh database of `task` with its gold actions applied (raises if one fails)."""
    db = generate_db(task.data["db_seed"])
    for a in task.gold_actions:
        obs, ok = run_tool(db, a.name, a.kwargs)
        if not ok:
            raise ValueError(f"gold action {a.name} of task {task.id} fails: {obs}")
    return db


def _target(kwargs: dict[str, Any]) -> str:
    oid = kwargs.get("order_id")
    if isinstance(oid, str):
        return oid if oid.startswith("#") else "#" + oid
    return str(kwargs.get("user_id"))


class Broken(NamedTuple):
    """A policy rule an action breaks: its id (`policy.RULES`) and what was done, in prose."""

    rule: str
    violation: str


def judgement(deviation: bool, broken: Broken | None = None) -> dict[str, Any]:
    """The env's judgement of one action, as step info and `check_action` give it: `deviation`
    (off the gold plan), `rule` (the id of the policy rule broken, or None) and `violation` (prose)."""
    return {
        "deviation": deviation,
        "rule": broken.rule if broken else None,
        "violation": broken.violation if broken else None,
    }


def said(replies: list[str], output: str) -> bool:
    """tau-bench's rule: the output, lower-cased, occurs in some reply lower-cased without commas."""
    return any(output.lower() in r.lower().replace(",", "") for r in replies)


@register_env("retail")
class RetailEnv(MultiTurnEnv):
    """Retail customer service: authenticate, look up, confirm, then cancel/modify/return/exchange.

    Args:
        seed: selects the task set; splits draw from disjoint database seeds.
        num_train, num_validation, num_test: tasks per split.
        max_turns: agent steps before the episode is cut (the reward is still computed).
        user: `"scripted"` (the deterministic `ScriptedRetailUser`) or a `UserSimulator` prototype
            (such as an `LLMUser`), copied per episode.
    """

    name = "retail"

    def __init__(
        self,
        seed: int = 0,
        num_train: int = 500,
        num_validation: int = 100,
        num_test: int = 115,
        max_turns: int = 40,
        user: str | UserSimulator = "scripted",
    ) -> None:
        if min(num_train, num_validation, num_test) < 0 or max_turns < 1:
            raise ValueError("task counts must be >= 0 and max_turns >= 1")
        if not (user == "scripted" if isinstance(user, str) else isinstance(user, UserSimulator)):
            raise ValueError(f'user must be "scripted" or a UserSimulator instance, got {user!r}')
        self.seed = seed
        self.num_tasks = {"train": num_train, "validation": num_validation, "test": num_test}
        self.max_turns = max_turns
        self.user = user
        self._gold_hashes: dict[tuple[str, int], str] = {}  # shared by forks on purpose

    # ------------------------------------------------------------------ protocol

    def tasks(self, split: str) -> list[Task]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return list(_tasks(split, self.num_tasks[split], self.seed))

    @property
    def tool_schemas(self) -> list[dict[str, Any]]:
        return copy.deepcopy(TOOL_SCHEMAS)

    def reset(self, task: Task, seed: int = 0) -> list[Message]:
        self.task = task
        self.db = generate_db(task.data["db_seed"])
        self._user = ScriptedRetailUser() if isinstance(self.user, str) else copy.copy(self.user)
        first, _ = split_stop(self._user.reset(task, seed))
        self._remaining = list(task.gold_actions)
        # amounts a correct agent may state: the initial data, the required outputs, the quoted differences
        texts = " ".join(f"{i.get('describe', '')} {i.get('report', '')}" for i in task.data["intents"])
        self._grounded = db_amounts(self.db) | amounts(texts) | set(task.required_outputs)
        self._auth_user: str | None = None
        self._confirmed = False
        self._replies: list[str] = []
        self._turns = 0
        self._done = False
        return [Message("system", content=POLICY), Message("user", content=first)]

    def step(self, action: Action) -> StepResult:
        if getattr(self, "task", None) is None:
            return error_result("step called before reset", **judgement(True))
        if self._done:
            return StepResult([], 0.0, True, {"error": "the episode is over", **judgement(False)})
        try:
            result = self._step(action)
        except Exception as e:  # the contract: agent output never raises out of step
            result = error_result(
                f"internal error on this action: {type(e).__name__}: {e}", **judgement(True)
            )
        self._turns += 1
        if not result.done and self._turns >= self.max_turns:
            result.done = True
            result.info["truncated"] = True
        if result.done:
            self._finish(result)
        return result

    # ------------------------------------------------------------------ judgement

    def plan(self) -> list[Action] | None:
        """The gold actions not yet matched, in order (None before `reset`)."""
        remaining = getattr(self, "_remaining", None)
        return list(remaining) if remaining is not None else None

    def review_examples(self) -> tuple[ReviewExample, ...]:
        """A write before authentication (revise) and the authentication lookup (approve)."""
        return REVIEW_EXAMPLES

    def check_action(self, action: Action | None) -> dict[str, Any]:
        """The env's judgement of `action` in the current state, without applying it.

        Returns ``{"deviation": bool, "rule": str | None, "violation": str | None}`` (see
        `judgement`) as `step` would put in info.
        """
        if getattr(self, "task", None) is None or not isinstance(action, Action):
            return judgement(True)
        if action.is_reply:
            return self._judge_reply(action.content)
        return self._judge(action)[0]

    def _judge_reply(self, text: str) -> dict[str, Any]:
        """A reply deviates when it states an amount nothing in the episode supports (a hallucination)."""
        bad = amounts(text) - self._grounded
        if bad:
            bad -= db_amounts(self.db)  # amounts the episode's writes created (new payments, balances)
        if bad:
            listed = ", ".join(sorted(bad))
            broken = Broken(NO_MADE_UP_FACTS, f"told the user an amount the data does not support ({listed})")
            return {**judgement(True, broken), "unsupported": sorted(bad)}
        return judgement(False)

    def _judge(self, action: Action) -> tuple[dict[str, Any], str, bool, DB | None, int | None]:
        """(judgement, observation, ok, new db or None, index of matched gold action)."""
        name, kwargs = action.name, action.kwargs
        broken = self._violation(action)
        if name not in TOOLS:
            obs, ok = run_tool(self.db, name, kwargs)
            return judgement(True, broken), obs, ok, None, None
        if name == TRANSFER:
            obs, ok = run_tool(self.db, name, kwargs)
            idx = next((i for i, g in enumerate(self._remaining) if g.name == TRANSFER), None)
            return judgement(idx is None, broken), obs, ok, None, idx
        if name not in WRITE_TOOLS:
            obs, ok = run_tool(self.db, name, kwargs)  # reads never mutate
            return judgement(False, broken), obs, ok, None, None
        new = copy_db(self.db)
        obs, ok = run_tool(new, name, kwargs)
        if not ok:
            return judgement(True, broken), obs, ok, None, None
        idx = self._match_gold(action, db_hash(new))
        return judgement(idx is None, broken), obs, ok, new, idx

    def _match_gold(self, action: Action, new_hash: str) -> int | None:
        """The remaining gold write with the same effect on the current database, if any."""
        target = _target(action.kwargs)
        for i, g in enumerate(self._remaining):
            if g.name != action.name or _target(g.kwargs) != target:
                continue  # cheap filter before simulating the gold action
            db = copy_db(self.db)
            _, ok = run_tool(db, g.name, g.kwargs)
            if ok and db_hash(db) == new_hash:
                return i
        return None

    def _owner(self, kwargs: dict[str, Any]) -> str | None:
        oid = kwargs.get("order_id")
        if isinstance(oid, str):
            order = self.db["orders"].get(oid if oid.startswith("#") else "#" + oid)
            return order["user_id"] if order else None
        uid = kwargs.get("user_id")
        return uid if isinstance(uid, str) and uid in self.db["users"] else None

    def _violation(self, action: Action) -> Broken | None:
        name = action.name
        kwargs = action.kwargs if isinstance(action.kwargs, dict) else {}
        if name == TRANSFER:
            if not any(g.name == TRANSFER for g in self.task.gold_actions):
                why = "transferred to a human agent although the request can be handled within policy"
                return Broken(NO_NEEDLESS_TRANSFER, why)
            return None
        if name in WRITE_TOOLS or name in PRIVATE_READS:
            what = "changed the database" if name in WRITE_TOOLS else "looked up private data"
            if self._auth_user is None:
                return Broken(AUTHENTICATE_FIRST, f"{what} before authenticating the user")
            owner = self._owner(kwargs)
            if owner is not None and owner != self._auth_user:
                return Broken(OWN_DATA_ONLY, f"{what} of another user ({owner})")
        if name in WRITE_TOOLS and not self._confirmed:
            why = "changed the database without an explicit 'yes' from the user after describing the action"
            return Broken(EXPLICIT_CONFIRMATION, why)
        return None

    # ------------------------------------------------------------------ steps

    def _step(self, action: Action) -> StepResult:
        if (
            not isinstance(action, Action)
            or not isinstance(action.name, str)
            or not isinstance(action.kwargs, dict)
        ):
            return error_result(f"malformed action {action!r}", **judgement(True))
        if action.is_reply:
            text = action.content
            self._replies.append(text)
            info = self._judge_reply(text)
            reply, stop = split_stop(self._user.respond(text))
            self._confirmed = says_yes(reply)
            return StepResult([Message("user", content=reply)], 0.0, stop, info)
        info, obs, ok, new_db, idx = self._judge(action)
        if not ok:
            return error_result(obs.removeprefix("Error: "), **info)
        if new_db is not None:
            self.db = new_db
            self._confirmed = False  # one "yes" covers one write
        if idx is not None:
            self._remaining.pop(idx)
        if action.name.startswith("find_user_id"):
            self._auth_user = obs
        return StepResult(
            [Message("tool", content=obs, name=action.name)], 0.0, action.name == TRANSFER, info
        )

    def _finish(self, result: StepResult) -> None:
        self._done = True
        gold = self.gold_hash(self.task)
        db_match = db_hash(self.db) == gold
        outputs = [said(self._replies, o) for o in self.task.required_outputs]
        success = db_match and all(outputs)
        result.reward = float(success)
        result.info.update(success=success, db_match=db_match, outputs_said=all(outputs))
        self.close()

    def close(self) -> None:
        """Let the episode's user drop backend state (an `LLMUser`'s KV cache); idempotent."""
        user, self._user = getattr(self, "_user", None), None
        close = getattr(user, "close", None)
        if callable(close):
            close()

    def gold_hash(self, task: Task) -> str:
        """Hash of the database after replaying `task`'s gold actions on a fresh copy (cached)."""
        key = (task.id, task.data["db_seed"])
        if key not in self._gold_hashes:
            self._gold_hashes[key] = db_hash(gold_db(task))
        return self._gold_hashes[key]
