"""A callback for the DDP test: each rank saves its actor weights at the end of training."""

from __future__ import annotations

import os

import torch
from lightning import Callback


class SaveRankWeights(Callback):
    def on_train_end(self, trainer, pl_module) -> None:
        out = os.environ["DDP_PROBE_DIR"]
        torch.save(
            {k: v.detach().cpu() for k, v in pl_module.actor.model.state_dict().items()},
            os.path.join(out, f"rank{trainer.global_rank}.pt"),
        )
        torch.save(
            {"world_size": trainer.world_size, "n_train_tasks_seen": pl_module.global_step},
            os.path.join(out, f"meta{trainer.global_rank}.pt"),
        )
