"""Critic data generation: self-play of a fixed actor, hard-task mining, labeling, the writer.

`lightning-asym predict --config configs/critic/datagen.yaml` runs the job
`lightning_asym.jobs.CriticDataGen` over the tasks of `lightning_asym.jobs.CriticTaskData`;
`CriticExampleWriter` appends the examples and builds the balanced train/validation files that
critic fine-tuning reads, and the unbalanced in-loop split that threshold calibration reads.
"""

from lightning_asym.datagen.balance import prepare
from lightning_asym.datagen.inloop import ApproveAll, generate_inloop, inloop_examples
from lightning_asym.datagen.labels import branch_labels, gold_feedback, gold_labels
from lightning_asym.datagen.progress import DataGenProgressBar
from lightning_asym.datagen.selfplay import DataGenConfig, TaskResult, generate
from lightning_asym.datagen.writer import CriticExampleWriter

__all__ = [
    "ApproveAll",
    "CriticExampleWriter",
    "DataGenConfig",
    "DataGenProgressBar",
    "TaskResult",
    "branch_labels",
    "generate",
    "generate_inloop",
    "gold_feedback",
    "gold_labels",
    "inloop_examples",
    "prepare",
]
