"""τ-bench's episode reward without its per-episode gold replay (`TauBenchEnv._calculate_reward`).

The gold database of a task is the same in every episode, so it is built and digested once
(`gold_digest`); each episode then digests its own database once (`db_digest`).

Two databases are the same when their canonical JSON is: `db_digest` hashes `json.dumps(data,
sort_keys=True)`, about 4x faster here than τ-bench's own `get_data_hash` (a recursive tuple
conversion, then `str`), and equal exactly when τ-bench's hashes are equal for JSON data.
"""

from __future__ import annotations

import hashlib
import json
import types
from typing import Any

RESPOND = "respond"
"""τ-bench's name of a reply to the user (`tau_bench.types.RESPOND_ACTION_NAME`)."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, set | frozenset):  # τ-bench's hash sorts a set's elements too
        return sorted(value, key=repr)
    raise TypeError(f"τ-bench data holds a {type(value).__name__}, which has no JSON form")


def db_digest(data: Any) -> str:
    """A sha256 of the database's canonical JSON (keys sorted; sets as sorted lists)."""
    text = json.dumps(data, sort_keys=True, default=_jsonable, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def gold_digest(env: Any) -> str:
    """The digest of the database a τ-bench env's task's gold actions leave: each is run through
    τ-bench's own tool on a fresh load of the data, as its `calculate_reward` replays them (a tool
    error leaves the data as the tool left it, an unknown name or a reply changes nothing, and
    the terminating tools are not run)."""
    data = env.data_load_func()
    for action in env.task.actions:
        tool = env.tools_map.get(action.name)
        if tool is None or action.name in env.terminate_tools:
            continue
        try:
            tool.invoke(data=data, **action.kwargs)
        except Exception:  # noqa: BLE001 - τ-bench turns a tool's exception into the observation
            pass
    return db_digest(data)


def reward_result(
    reward: float, db_match: bool, outputs: dict[str, bool], actions: list[Any], tau_types: Any = None
) -> Any:
    """What τ-bench's `calculate_reward` returns: its own `RewardResult` where τ-bench is
    installed (`tau_types`, its `tau_bench.types`), else an object with the same fields."""
    if outputs:
        info = {"r_outputs": float(all(outputs.values())), "outputs": dict(outputs)}
        kind = "RewardOutputInfo"
    else:
        info = {"r_actions": float(db_match), "gt_data_hash": ""}
        kind = "RewardActionInfo"
    done = [a for a in actions if getattr(a, "name", None) != RESPOND]
    result = getattr(tau_types, "RewardResult", None)
    if result is None:
        return types.SimpleNamespace(reward=reward, info=types.SimpleNamespace(**info), actions=done)
    return result(reward=reward, info=getattr(tau_types, kind)(**info), actions=done)
