"""`AsymProgressBar`: a rich progress bar that counts what this project's runs spend time on.

Lightning's default bar counts dataloader batches and epochs. Here a training "epoch" is an
endless stream (`Epoch 0/-2`), one step can take minutes (rich's speed estimate forgets samples
older than 30 s, so the ETA vanished), and `test`/`validate` generate their episodes inside
the dataloader, so a batch bar sat at 2/2 while most of the run was still to come. This bar:

* counts training in optimiser steps against `trainer.max_steps`, with an ETA from the average
  step time since the bar started (resumed runs start at their `global_step`);
* shows the rollout of the current step while it runs (`train · rollout 12/32`, episodes
  finished), then `train · update`;
* counts `validate`/`test`/`predict` over rollout data in episodes, updated as episodes end
  (the data module's engines report through `RolloutEngine.on_progress`);
* shows `v_num` as the integer it is;
* redraws every second: Lightning redraws only on its own events, so a step of minutes froze
  the elapsed time on screen.

Other loaders (critic SFT data) keep Lightning's batch counting, with the same ETA and rate.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.callbacks.progress.rich_progress import (
    BatchesProcessedColumn,
    CustomBarColumn,
)
from lightning.pytorch.trainer.states import RunningStage
from rich.progress import ProgressColumn, Task, TextColumn
from rich.text import Text

ENGINES = ("engine", "eval_engine")
"""Attributes of a data module that hold a `RolloutEngine` (`RolloutDataModule`)."""


def _rate(task: Task) -> float | None:
    """Seconds per unit since the bar started (an average: steps of minutes keep their ETA)."""
    done = task.completed - task.fields.get("base", 0)
    elapsed = task.finished_time if task.finished else task.elapsed
    if not done or not elapsed:
        return None
    return elapsed / done


class EtaColumn(ProgressColumn):
    """`elapsed • remaining`, the remaining time from the average time per unit so far."""

    def __init__(self, style: Any) -> None:
        self.style = style
        super().__init__()

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        rate = _rate(task)
        finite = task.total is not None and task.total != float("inf")
        remaining = rate * max(0.0, task.total - task.completed) if rate and finite else None  # type: ignore[operator]

        def fmt(s: float | None) -> str:
            return "-:--:--" if s is None else str(timedelta(seconds=int(s)))

        return Text(f"{fmt(elapsed)} • {fmt(remaining)}", style=self.style)


class RateColumn(ProgressColumn):
    """`12.3 s/step` when a unit takes a second or more, else `4.20 step/s`."""

    def __init__(self, style: Any) -> None:
        self.style = style
        super().__init__()

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "it")
        rate = _rate(task)
        if rate is None:
            return Text(f"-- {unit}/s", style=self.style)
        text = f"{rate:.1f} s/{unit}" if rate >= 1 else f"{1 / rate:.2f} {unit}/s"
        return Text(text, style=self.style)


class AsymProgressBar(RichProgressBar):
    """Steps with an ETA in training, episodes as they finish in evaluation (see the module doc).

    Args:
        refresh_rate: refreshes per second of the live display (0 disables the bar).
        leave: keep finished bars on screen.
    """

    def __init__(self, refresh_rate: int = 1, leave: bool = True) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=leave)
        self._hooked: list[Any] = []
        self._episode_bar: Any = None
        self._episode_name = ""
        self._episodes_before = 0  # episodes of the plays that finished
        self._play = (0, 0)  # (done, total) of the latest play
        self._ticker: threading.Thread | None = None
        self._ticker_stop = threading.Event()

    # ------------------------------------------------------------------ columns and texts

    def configure_columns(self, trainer: Trainer) -> list:
        return [
            TextColumn("[progress.description]{task.description}"),
            CustomBarColumn(
                complete_style=self.theme.progress_bar,
                finished_style=self.theme.progress_bar_finished,
                pulse_style=self.theme.progress_bar_pulse,
            ),
            BatchesProcessedColumn(style=self.theme.batch_progress),
            EtaColumn(style=self.theme.time),
            RateColumn(style=self.theme.processing_speed),
        ]

    @property
    def total_train_batches(self) -> int | float:
        # one optimiser step per rollout batch; the stream itself is endless
        max_steps = self.trainer.max_steps
        return max_steps if max_steps and max_steps > 0 else super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_steps and self.trainer.max_steps > 0:
            return "train"
        return super()._get_train_description(current_epoch)

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        if "v_num" in items:  # a version number, not a metric to print as 1.000
            items["v_num"] = str(items["v_num"])
        return items

    # ------------------------------------------------------------------ a redraw every second

    def _init_progress(self, trainer: Trainer) -> None:
        super()._init_progress(trainer)
        if self.is_enabled and self.progress is not None and self._ticker is None:
            self._ticker_stop.clear()
            self._ticker = threading.Thread(target=self._tick, name="progress-redraw", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._ticker_stop.wait(1.0):
            progress = self.progress
            if progress is not None and not self._progress_stopped:
                progress.soft_refresh()  # only flags the live display's own thread to redraw

    def _stop_ticker(self) -> None:
        self._ticker_stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2.0)
        self._ticker = None

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_ticker"], state["_ticker_stop"] = None, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._ticker_stop = threading.Event()

    # ------------------------------------------------------------------ rollout progress

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        for name in ENGINES:
            engine = getattr(trainer.datamodule, name, None)
            if engine is not None and hasattr(engine, "on_progress"):
                engine.on_progress = self._on_rollout_progress
                self._hooked.append(engine)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for engine in self._hooked:
            engine.on_progress = None
        self._hooked = []
        self._stop_ticker()
        super().teardown(trainer, pl_module, stage)

    def _on_rollout_progress(self, done: int, total: int, steps: int = 0) -> None:
        if self.is_disabled:
            return
        stage = self.trainer.state.stage
        if stage in (RunningStage.VALIDATING, RunningStage.TESTING, RunningStage.PREDICTING):
            # evaluation loops fetch (here: play) their first batch before `on_*_start`
            self._init_progress(self.trainer)
        if self.progress is None:
            return
        if stage == RunningStage.TRAINING and self.train_progress_bar_id is not None:
            # short: an 80-column terminal must still show the ETA; "update" once all episodes ended
            doing = "update" if done == total else f"rollout {done}/{total}"
            text = f"{self._get_train_description(self.trainer.current_epoch)} · {doing}"
            self.progress.update(self.train_progress_bar_id, description=text)
        elif stage in (RunningStage.VALIDATING, RunningStage.TESTING, RunningStage.PREDICTING):
            bar = self._episodes_bar()
            if bar is not None:
                # count plays, not batches: Lightning may fetch (play) the next batch before it
                # ends the current one, and a play reports done == total as its last call
                if self._play[1] and self._play[0] == self._play[1]:
                    self._episodes_before += self._play[1]
                self._play = (done, total)
                # the turn of the live episodes: a slow actor (an API on a CPU) still shows movement
                turn = f" · turn {steps + 1}" if done < total else ""
                self.progress.update(
                    bar, completed=self._episodes_before + done, description=self._episode_name + turn
                )
        self.refresh()

    def _episode_total(self) -> int | None:
        """Episodes the current evaluation plays, when its loader is a fixed rollout list."""
        stage = self.trainer.state.stage
        loaders = {
            RunningStage.VALIDATING: self.trainer.val_dataloaders,
            RunningStage.TESTING: self.trainer.test_dataloaders,
            RunningStage.PREDICTING: self.trainer.predict_dataloaders,
        }.get(stage)  # type: ignore[call-overload]
        if isinstance(loaders, (list, tuple)):
            loaders = loaders[0] if len(loaders) == 1 else None
        specs = getattr(getattr(loaders, "dataset", None), "specs", None)
        return len(specs) if specs is not None else None

    def _episodes_bar(self) -> Any:
        if self._episode_bar is None:
            total = self._episode_total()
            if total is None or self.progress is None:
                return None
            name = str(self.trainer.state.stage.value if self.trainer.state.stage else "eval")
            self._episode_name = f"{name} episodes"
            self._episode_bar = self.progress.add_task(self._episode_name, total=total, unit="episode")
            self._episodes_before, self._play = 0, (0, 0)
        return self._episode_bar

    def _end_episodes(self) -> None:
        if self._episode_bar is not None and self.progress is not None:
            visible = self.trainer.state.fn != "fit"  # validation inside fit: hide, as Lightning does
            self.progress.update(self._episode_bar, visible=visible)
        self._episode_bar, self._episodes_before, self._play = None, 0, (0, 0)

    def _episode_batch_start(self) -> bool:
        if self.is_disabled or self.trainer.sanity_checking:
            return False
        return self._episodes_bar() is not None

    def _episode_batch_end(self, batch: Any) -> bool:
        if self._episode_bar is None or self.progress is None:
            return False
        self.refresh()  # the engine already counted this batch's episodes
        return True

    # ------------------------------------------------------------------ Lightning hooks

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        if self.progress is not None and self.train_progress_bar_id is not None:
            step = trainer.global_step  # a resumed run starts where it stopped
            self.progress.update(self.train_progress_bar_id, completed=step, base=step, unit="step")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if not self.is_disabled and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()
        if self.progress is not None and self.train_progress_bar_id is not None:
            description = self._get_train_description(trainer.current_epoch)
            self.progress.update(self.train_progress_bar_id, description=description, unit="step")
        self._update(self.train_progress_bar_id, trainer.global_step)
        self._update_metrics(trainer, pl_module)
        self.refresh()

    def on_validation_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if not self._episode_batch_start():
            super().on_validation_batch_start(trainer, pl_module, *args)

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if not self._episode_batch_end(args[1]):
            super().on_validation_batch_end(trainer, pl_module, *args)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end_episodes()
        super().on_validation_epoch_end(trainer, pl_module)

    def on_test_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if not self._episode_batch_start():
            super().on_test_batch_start(trainer, pl_module, *args)

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if not self._episode_batch_end(args[1]):
            super().on_test_batch_end(trainer, pl_module, *args)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end_episodes()
        super().on_test_end(trainer, pl_module)

    def on_predict_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if not self._episode_batch_start():
            super().on_predict_batch_start(trainer, pl_module, *args)

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if not self._episode_batch_end(args[1]):
            super().on_predict_batch_end(trainer, pl_module, *args)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end_episodes()
        super().on_predict_end(trainer, pl_module)
