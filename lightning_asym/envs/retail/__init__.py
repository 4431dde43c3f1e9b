"""A tau-bench-shaped retail customer-service domain: procedural database, tools, tasks, scripted user."""

from lightning_asym.envs.retail.db import db_hash, generate_db
from lightning_asym.envs.retail.env import RetailEnv, replay
from lightning_asym.envs.retail.policy import POLICY
from lightning_asym.envs.retail.tasks import make_task, make_tasks
from lightning_asym.envs.retail.tools import TOOL_SCHEMAS, TOOLS, WRITE_TOOLS, run_tool
from lightning_asym.envs.retail.user import ScriptedRetailUser

__all__ = [
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
    "replay",
    "run_tool",
]
