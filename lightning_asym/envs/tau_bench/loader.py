"""Importing an installed τ-bench, with errors that name what is missing, and its split maps.

τ-bench's `tau_bench/envs/user.py` imports `litellm` at module level, even though only its
LLM users ever call it. When litellm is missing we import τ-bench with a stand-in `litellm`
module in `sys.modules` for the duration of the import only: the tasks, tools, database and
reward then work, and τ-bench's own LLM user fails with `LITELLM_HINT` if anyone builds one.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

INSTALL_HINT = (
    "tau-bench is not installed (module {missing!r} not found). It is not on PyPI: install a "
    "checkout with `pip install --no-deps -e <path/to/tau-bench>` (from this repository: "
    "`make tau-bench`, which uses ../shared/tau-bench), or put that folder on PYTHONPATH."
)
LITELLM_HINT = (
    "tau-bench's own LLM users (user_strategy llm/react/verify/reflection) call `litellm`, which "
    "is not installed: `pip install litellm` (set LITELLM_LOCAL_MODEL_COST_MAP=True offline), or "
    "set `user:` to lightning_asym.envs.tau_bench.TauLLMUser (any OpenAI-compatible endpoint, no "
    "litellm) or TauScriptedUser (no model at all)."
)
DEPENDENCY_HINT = (
    "tau-bench is installed but importing it failed because module {missing!r} is missing: "
    "install it (`pip install {missing}`); τ-bench was installed without its dependencies."
)

TAU_SPLITS: dict[str, dict[str, str]] = {
    "retail": {"train": "train", "validation": "dev", "test": "test"},
    "airline": {"test": "test"},
}
"""Per domain: our split name -> τ-bench's `task_split`. τ-bench's airline has a test split only."""

LLM_STRATEGIES = ("llm", "react", "verify", "reflection")
"""τ-bench's user strategies that call a model through litellm."""


def litellm_available() -> bool:
    """Whether the real `litellm` can be imported (a stand-in of ours does not count)."""
    if "litellm" in sys.modules:  # None there means "blocked" (tests use it)
        mod = sys.modules["litellm"]
        return mod is not None and not getattr(mod, "__lightning_asym_stand_in__", False)
    return importlib.util.find_spec("litellm") is not None


def _stand_in() -> types.ModuleType:
    mod = types.ModuleType("litellm")
    mod.__lightning_asym_stand_in__ = True  # type: ignore[attr-defined]

    def completion(*args: Any, **kwargs: Any) -> Any:
        raise ImportError(LITELLM_HINT)

    mod.completion = completion  # type: ignore[attr-defined]
    return mod


def import_tau_bench() -> tuple[Any, Any]:
    """`(tau_bench.envs, tau_bench.types)`, or an ImportError naming the module that is missing."""
    try:
        return _import()
    except ModuleNotFoundError as e:
        if e.name != "litellm":
            raise _explain(e) from e
    # litellm is missing: import τ-bench with the stand-in, then take the stand-in away again,
    # so nothing else in the process ever mistakes it for the real package
    blocked = "litellm" in sys.modules  # a None entry: someone (a test) blocks the import on purpose
    sys.modules["litellm"] = _stand_in()
    try:
        return _import()
    except ModuleNotFoundError as e:
        raise _explain(e) from e
    finally:
        if getattr(sys.modules.get("litellm"), "__lightning_asym_stand_in__", False):
            if blocked:
                sys.modules["litellm"] = None  # type: ignore[assignment]
            else:
                del sys.modules["litellm"]


def _import() -> tuple[Any, Any]:
    return importlib.import_module("tau_bench.envs"), importlib.import_module("tau_bench.types")


def _explain(e: ModuleNotFoundError) -> ImportError:
    missing = e.name or str(e)
    if missing.split(".")[0] == "tau_bench":
        return ImportError(INSTALL_HINT.format(missing=missing))
    return ImportError(DEPENDENCY_HINT.format(missing=missing))


def tau_split(env_name: str, splits: dict[str, str], split: str) -> str:
    """τ-bench's `task_split` for our `split`, or a ValueError that lists what there is."""
    if split not in splits:
        raise ValueError(
            f"tau-bench {env_name!r} has no split {split!r} here; the splits are {sorted(splits)} "
            f"(data.init_args.env.init_args.splits maps our names to τ-bench's; τ-bench's airline "
            f"has a test split only)"
        )
    return splits[split]
