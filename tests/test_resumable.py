"""A fit resumed from a mid-epoch checkpoint sees the batches an uninterrupted fit would have seen."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from lightning_asym.jobs.resumable import EpochPermutation, ResumableLoader


class Recorder(L.LightningModule):
    def __init__(self, size: int = 20, batch_size: int = 2) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.size, self.batch_size = size, batch_size
        self.seen: list[list[int]] = []

    def training_step(self, batch: list[int], batch_idx: int) -> torch.Tensor:
        self.seen.append(list(batch))
        return self.layer(torch.tensor(batch, dtype=torch.float32)[:, None]).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self) -> ResumableLoader:
        return ResumableLoader(list(range(self.size)), batch_size=self.batch_size, collate_fn=list)


def _fit(tmp_path, max_steps: int, ckpt_path: str | None = None, seed: int = 0) -> list[list[int]]:
    L.seed_everything(seed)
    model = Recorder()
    trainer = L.Trainer(
        max_steps=max_steps,
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            L.pytorch.callbacks.ModelCheckpoint(
                dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=1
            )
        ],
    )
    trainer.fit(model, ckpt_path=ckpt_path)
    return model.seen


@pytest.mark.parametrize("cut", [3, 10, 13])  # mid-epoch, at the epoch's end, mid second epoch
def test_resumed_fit_continues_the_epoch(tmp_path, cut):
    whole = _fit(tmp_path / "whole", max_steps=16)
    first = _fit(tmp_path / "cut", max_steps=cut)
    # resumed under another seed_everything: the order is the checkpoint's, not the new seed's
    rest = _fit(
        tmp_path / "cut", max_steps=16, ckpt_path=str(tmp_path / "cut" / "ckpt" / "last.ckpt"), seed=7
    )
    assert first + rest == whole
    assert sorted(sum(whole[:10], [])) == list(range(20))  # one epoch covers the split once


def test_epochs_differ_and_repeat_under_a_seed():
    a, b = EpochPermutation(50, seed=3), EpochPermutation(50, seed=3)
    first = a.order()
    a.set_epoch(1)
    assert a.order() != first and sorted(a.order()) == list(range(50))
    assert b.order() == first
    b.resume = (0, 10)
    assert list(b) == first[10:]
    assert list(b) == first  # the skip applies to the resumed iteration only


def test_a_rebuilt_distributed_loader_reads_its_own_sampler_and_starts_the_epoch_over(caplog):
    from torch.utils.data import SequentialSampler

    data = list(range(6))
    loader = ResumableLoader(data, batch_size=2, collate_fn=list, sampler=SequentialSampler(data))
    loader.load_state_dict({"epoch": 0, "batches": 2, "seed": 0})
    assert list(loader) == [[0, 1], [2, 3], [4, 5]]
    assert "starts over" in caplog.text
