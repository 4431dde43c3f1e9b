"""`AsymProgressBar`: training counts steps against max_steps with an ETA; evaluation over rollout
data counts episodes as they finish, while the dataloader is still playing them."""

from __future__ import annotations

from types import SimpleNamespace

from lightning import Trainer
from lightning.pytorch.trainer.states import RunningStage
from rich.progress import Task
from rich.text import Text

from lightning_asym.backends import ScriptedBackend
from lightning_asym.envs.preferences import PreferencesEnv, RandomPolicy
from lightning_asym.jobs import RolloutDataModule, SupervisedAgent
from lightning_asym.progress import AsymProgressBar, EtaColumn, RateColumn


class Recorder(AsymProgressBar):
    """Records the episode bar each time the engine reports, and when batches end."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, float, float | None]] = []
        self.descriptions: list[str] = []

    def _task(self, bar):
        return {t.id: t for t in self.progress.tasks}[bar]

    def _on_rollout_progress(self, done: int, total: int, steps: int = 0) -> None:
        super()._on_rollout_progress(done, total, steps)
        task = self._task(self._episode_bar)
        self.seen.append(("rollout", task.completed, task.total))
        self.descriptions.append(task.description)
        assert self._ticker is not None and self._ticker.is_alive()  # redraws while rollouts run

    def on_test_batch_end(self, trainer, pl_module, *args) -> None:
        super().on_test_batch_end(trainer, pl_module, *args)
        self.seen.append(("batch_end", 0.0, None))


def test_test_bar_counts_episodes_as_they_finish(tmp_path):
    env = PreferencesEnv(num_aspects=2, prefs_per_aspect=1, num_options=4, max_turns=8, num_test=6)
    data = RolloutDataModule(env, batch_size=4, num_test_tasks=6, test_trials=1)
    module = SupervisedAgent(ScriptedBackend(policy=RandomPolicy()), max_k=1, save_trajectories=False)
    bar = Recorder()
    trainer = Trainer(
        accelerator="cpu",
        logger=False,
        callbacks=[bar],
        default_root_dir=tmp_path,
        enable_model_summary=False,
    )
    trainer.test(module, datamodule=data)

    rollouts = [(c, t) for kind, c, t in bar.seen if kind == "rollout"]
    assert {t for _, t in rollouts} == {6}  # one bar over all 6 episodes, not 2 batches
    counts = [c for c, _ in rollouts]
    assert counts == sorted(counts) and counts[-1] == 6
    # the bar moved while the dataloader was still playing: at every step of the first batch's
    # episodes, and it had counted that batch's 4 episodes before Lightning saw the batch
    first_end = next(i for i, (kind, _, _) in enumerate(bar.seen) if kind == "batch_end")
    before = [c for kind, c, _ in bar.seen[:first_end] if kind == "rollout"]
    assert len(before) >= 2 and 4 in before
    # while episodes run, the bar names the live episodes' next turn; a play's last report has none
    assert bar.descriptions[0] == "test episodes · turn 2" and bar.descriptions[-1] == "test episodes"
    assert bar._hooked == [] and data.eval_engine.on_progress is None  # unhooked at teardown
    assert bar._ticker is None  # the once-a-second redraw stopped with the run


def _task(total: float, completed: float, elapsed: float, **fields) -> Task:
    task = Task(0, "x", total, completed, _get_time=lambda: 100.0 + elapsed, fields=fields)
    task.start_time = 100.0
    return task


def test_eta_and_rate_use_the_average_since_the_bar_started():
    # 3 steps of a resumed run (started at step 10) took 90 s: 30 s/step, 87 steps to go
    task = _task(total=100, completed=13, elapsed=90, base=10, unit="step")
    assert str(EtaColumn("").render(task)) == "0:01:30 • 0:43:30"
    assert RateColumn("").render(task) == Text("30.0 s/step")
    fast = _task(total=100, completed=50, elapsed=10, unit="step")
    assert str(RateColumn("").render(fast)) == "5.00 step/s"
    assert str(EtaColumn("").render(_task(total=100, completed=0, elapsed=5))) == "0:00:05 • -:--:--"


def test_training_counts_steps_against_max_steps():
    bar = AsymProgressBar()
    bar._trainer = SimpleNamespace(max_steps=500, state=SimpleNamespace(stage=RunningStage.TRAINING))
    assert bar.total_train_batches == 500
    assert bar._get_train_description(0) == "train"
