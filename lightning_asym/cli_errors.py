"""Config errors as one line that names the key: what `lightning-asym` prints instead of a wall.

Two kinds of failure reach the user before any work starts:

* the parser refuses a value or a key (a typo, a wrong type): jsonargparse prints its usage
  (about 50 lines) and a nested explanation of every Union subtype it tried. `condense` keeps
  the one line that matters and the key path it belongs to, with a suggestion for typos;
* a constructor refuses a value (`data.batch_size must be >= 1`), or a model directory does not
  exist: jsonargparse wraps the exception in its own, so a `UserError` arrives as two chained
  tracebacks. `config_error` finds the cause in the chain and names the config key.

Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning_asym.errors import UserError

PACKAGE_DIR = Path(__file__).resolve().parent
BOILERPLATE = (
    "Does not validate against any of the Union subtypes",
    "Subtypes:",
    "Errors:",
    "Given value type:",
    "Given value:",
    "- Expected a <class 'NoneType'>",
    "Expected a <class 'NoneType'>",
)
MODEL_ALIASES = ("tiny", "smollm2")


def condense(message: str, option_strings: Iterable[str] = ()) -> str:
    """jsonargparse's (possibly nested, many-line) parse error as one line starting with the key.

    `option_strings` are the parser's options, for a "did you mean" on unrecognized arguments.
    """
    lines = [line for line in message.splitlines() if line.strip()]
    if len(lines) == 1 and not lines[0].startswith("Parser key"):
        return _suggest_option(message.strip(), option_strings)
    stack: list[tuple[int, str, str | None]] = []  # (indent, key part, class_path)
    best: tuple[int, list[str], str | None, str] | None = None
    for raw in lines:
        text, indent = raw.strip(), len(raw) - len(raw.lstrip())
        if text.startswith("- "):
            text, indent = text[2:], indent + 2
        if text.startswith(BOILERPLATE):
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if m := re.match(r'Parser key "([^"]+)":\s*(.*)', text):
            stack.append((indent, m[1], None))
            text, indent = m[2], indent + 1
        elif m := re.match(r"Problem with given class_path '([^']+)':\s*(.*)", text):
            stack.append((indent, "init_args", m[1]))
            text, indent = m[2], indent + 1
        if text and not text.startswith(BOILERPLATE) and (best is None or indent > best[0]):
            classes = [c for _, _, c in stack if c]
            best = (indent, [k for _, k, _ in stack], classes[-1] if classes else None, text)
    if best is None:
        return " ".join(message.split())
    _, path, class_path, cause = best
    if m := re.match(r"Option '([^']+)' is not accepted", cause):
        return _unknown_option(path, m[1], class_path)
    if path and path[-1] == "init_args" and class_path is not None:
        return f"{'.'.join(path[:-1])}: class_path {class_path!r}: {cause}"
    return f"{'.'.join(path)}: {cause}" if path else cause


def _unknown_option(path: list[str], option: str, class_path: str | None) -> str:
    key = ".".join([*path, option])
    if class_path is None:
        return f"{key}: no such option"
    known = _parameters(class_path)
    close = difflib.get_close_matches(option.split(".")[-1], known, n=1)
    hint = f"; did you mean {'.'.join([*path, close[0]])}?" if close else ""
    return f"{key}: {class_path} has no option {option!r}{hint}"


def _parameters(class_path: str) -> list[str]:
    try:
        module, _, name = class_path.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
    except Exception:  # a suggestion only: never fail while reporting a failure
        return []


def _suggest_option(message: str, option_strings: Iterable[str]) -> str:
    m = re.match(r"unrecognized arguments: (.*)", message)
    if not m:
        return message
    unknown = [a.split("=")[0] for a in m[1].split() if a.startswith("-")]
    options = list(option_strings)
    parts = []
    for arg in unknown:
        close = difflib.get_close_matches(arg, options, n=1)
        parts.append(f"{arg}: no such option" + (f" (did you mean {close[0]}?)" if close else ""))
    return "; ".join(parts) or message


def config_error(error: BaseException, config: Any) -> UserError | None:
    """The user-facing error behind an exception raised while the config's classes were made.

    `config` is the parsed config (a jsonargparse `Namespace`) whose keys are named. None when
    the cause is not the user's to fix (a bug: it keeps its traceback).
    """
    chain = _chain(error)
    for e in chain:
        if isinstance(e, UserError):
            return e
    cause = chain[-1]
    if isinstance(cause, ValueError) and _raised_by_us(cause):
        return UserError(str(cause))
    if isinstance(cause, OSError) or type(cause).__name__ == "HFValidationError":
        return _missing_path(cause, config)
    return None


def _chain(error: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    e: BaseException | None = error
    while e is not None and e not in out:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def _raised_by_us(e: BaseException) -> bool:
    """Whether `e` was raised by a line of this package (a validation), not deeper."""
    frames = traceback.extract_tb(e.__traceback__)
    return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(PACKAGE_DIR)


def _missing_path(cause: BaseException, config: Any) -> UserError | None:
    """A model or data path that does not exist, named with the config key that holds it."""
    quoted = set(re.findall(r"'([^']+)'", str(cause)))
    if getattr(cause, "filename", None):
        quoted.add(str(cause.filename))
    exact, inside = [], []
    for key, value in _items(config):
        if not isinstance(value, str) or value in MODEL_ALIASES or Path(value).exists():
            continue
        if value in quoted:
            exact.append((key, value))
        elif any(q.startswith(value.rstrip("/") + "/") for q in quoted):
            inside.append((key, value))
    found = exact or sorted(inside, key=lambda kv: -len(kv[1]))
    if not found:
        return None
    key, value = found[0]
    is_model = key.endswith(("model", "backend", "tokenizer"))
    want = (
        f"an existing transformers directory, {' or '.join(MODEL_ALIASES)}"
        if is_model
        else "an existing path"
    )
    return UserError(
        f"{key}: {value!r} does not exist (relative to {Path.cwd()}). Create it first (the run that "
        f"writes it, e.g. a critic's save_dir), or set {key} to {want}."
    )


def _items(config: Any) -> list[tuple[str, Any]]:
    try:
        return list(config.items())
    except Exception:
        return []
