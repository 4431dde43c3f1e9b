"""`review_config.json`: the review settings saved beside a fine-tuned critic's directory.

CriticSFT and threshold calibration write the prompt options the critic was trained with and
the calibrated `revise_threshold` into `<critic dir>/review_config.json`; `GenerativeCritic`
reads them when it loads that directory, so the critic reviews with its own training prompt
and threshold unless a setting is given explicitly. Keys other than `REVIEW_KEYS` (metrics,
provenance) are ignored here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning_asym.errors import UserError

REVIEW_CONFIG = "review_config.json"
REVIEW_KEYS = (
    "include_policy",
    "max_messages",
    "earlier_actions",
    "few_shot",
    "privileged",
    "revise_threshold",
)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("true or false")
    return value


def _max_messages(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise TypeError("an integer >= 1 or null (all)")
    return value


def _threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise TypeError("a number in [0, 1]")
    return float(value)


_CHECKS = {
    "include_policy": _bool,
    "few_shot": _bool,
    "privileged": _bool,
    "earlier_actions": _bool,
    "max_messages": _max_messages,
    "revise_threshold": _threshold,
}


def read_review_config(directory: str | Path) -> dict[str, Any]:
    """The review settings in `<directory>/review_config.json` (`{}` when there is no such file)."""
    path = Path(directory).expanduser() / REVIEW_CONFIG
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); fix or delete the file") from e
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object of review settings, got {type(data).__name__}")
    out = {}
    for key in REVIEW_KEYS:
        if key in data:
            try:
                out[key] = _CHECKS[key](data[key])
            except TypeError as e:
                raise UserError(f"{path}: {key} must be {e}, got {data[key]!r}") from None
    return out
