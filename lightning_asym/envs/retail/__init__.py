"""A tau-bench-shaped retail customer-service domain: procedural database, tools, tasks, scripted
user, the conversation reader, and the noisy oracle actor that plays it."""

from lightning_asym.envs.retail.db import db_hash, generate_db
from lightning_asym.envs.retail.env import RetailEnv, gold_db
from lightning_asym.envs.retail.oracle import NoisyOracleBackend
from lightning_asym.envs.retail.policy import POLICY
from lightning_asym.envs.retail.tasks import make_task, make_tasks
from lightning_asym.envs.retail.tools import TOOL_SCHEMAS, TOOLS, WRITE_TOOLS, run_tool
from lightning_asym.envs.retail.user import ScriptedRetailUser

__all__ = [
    "NoisyOracleBackend",
    "POLICY",
    "TOOLS",
    "TOOL_SCHEMAS",
    "WRITE_TOOLS",
    "RetailEnv",
    "ScriptedRetailUser",
    "db_hash",
    "generate_db",
    "make_task",
    "make_tasks",
    "gold_db",
    "run_tool",
]
