"""The `preferences` domain: a UserBench-like user with hidden, indirectly voiced preferences."""

from lightning_asym.envs.preferences.domain import ASPECT_NAMES, ASPECTS, classify, detect_aspects
from lightning_asym.envs.preferences.env import PreferencesEnv, outcomes, score
from lightning_asym.envs.preferences.generate import GenConfig, generate_split
from lightning_asym.envs.preferences.hints import HINTS, decode_hints
from lightning_asym.envs.preferences.policies import ExpertPolicy, RandomPolicy, read_preferences
from lightning_asym.envs.preferences.user import PreferenceUser

__all__ = [
    "ASPECTS",
    "ASPECT_NAMES",
    "HINTS",
    "ExpertPolicy",
    "GenConfig",
    "PreferenceUser",
    "PreferencesEnv",
    "RandomPolicy",
    "classify",
    "decode_hints",
    "detect_aspects",
    "generate_split",
    "outcomes",
    "read_preferences",
    "score",
]
