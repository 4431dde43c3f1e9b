"""Bad values and keys end `lightning-asym` with one line naming the key, and exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightning_asym.cli import main
from lightning_asym.cli_errors import condense

CONF = Path(__file__).parent / "conf"
PREFERENCES = Path(__file__).parent.parent / "configs" / "preferences" / "random.yaml"


def fails(capsys, *args: str) -> str:
    """Runs the CLI, asserts exit status 2 and a short stderr, returns its last line."""
    with pytest.raises(SystemExit) as info:
        main(list(args))
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) <= 4, err  # e.g. "Seed set to 0" may come first
    assert lines[-1].startswith("error: "), err
    return lines[-1]


def api_config(tmp_path: Path, **actor: object) -> str:
    path = tmp_path / "api.yaml"
    init = {"base_url": "http://127.0.0.1:9/v1", "model": "m", **actor}
    path.write_text(
        json.dumps(
            {
                "model": {
                    "class_path": "lightning_asym.jobs.SupervisedAgent",
                    "init_args": {
                        "actor": {
                            "class_path": "lightning_asym.backends.openai.OpenAIBackend",
                            "init_args": init,
                        }
                    },
                },
                "data": {
                    "class_path": "lightning_asym.jobs.RolloutDataModule",
                    "init_args": {"env": {"class_path": "lightning_asym.envs.preferences.PreferencesEnv"}},
                },
            }
        )
    )
    return str(path)


@pytest.mark.parametrize("size", ["0", "-1"])
def test_a_bad_batch_size_is_one_line_naming_the_key(capsys, size):
    line = fails(capsys, "test", "--config", str(PREFERENCES), "--data.init_args.batch_size", size)
    assert "data.batch_size must be >= 1" in line and f"got {size}" in line


def test_negative_max_revisions_names_the_key(capsys):
    line = fails(
        capsys, "test", "--config", str(PREFERENCES),
        "--data.init_args.supervision", '{"max_revisions": -1}',
    )  # fmt: skip
    assert "max_revisions" in line and "-1" in line


def test_zero_concurrency_of_an_api_actor_names_the_key(capsys, tmp_path):
    line = fails(capsys, "test", "--config", api_config(tmp_path, max_concurrency=0))
    assert line == "error: model.actor.init_args.max_concurrency must be >= 1, got 0"


def test_a_missing_critic_directory_says_so_and_names_the_key(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = Path(__file__).parent.parent / "configs" / "critic" / "test_tiny.yaml"
    line = fails(capsys, "test", "--config", str(config))
    assert "model.init_args.reviewer.init_args.backend" in line
    assert "'runs/critic_pipeline/critic' does not exist" in line
    assert "HFValidationError" not in line and "Repo id" not in line


def test_a_typo_in_a_key_suggests_the_real_one_without_the_usage(capsys):
    line = fails(capsys, "test", "--config", str(PREFERENCES), "--data.init_args.batchsize", "3")
    assert line == (
        "error: data.init_args.batchsize: lightning_asym.jobs.RolloutDataModule has no option "
        "'batchsize'; did you mean data.init_args.batch_size?"
    )
    line = fails(capsys, "test", "--config", str(PREFERENCES), "--trainer.max_stepz", "3")
    assert line == "error: --trainer.max_stepz: no such option (did you mean --trainer.max_steps?)"


def test_a_wrong_type_and_a_missing_config_file_name_the_key(capsys, tmp_path):
    line = fails(capsys, "test", "--config", str(PREFERENCES), "--data.init_args.batch_size", "abc")
    assert line.startswith("error: data.init_args.batch_size: ") and "abc" in line
    line = fails(capsys, "test", "--config", str(tmp_path / "nope.yaml"))
    assert line.startswith("error: config: ") and "nope.yaml" in line


def test_model_accepts_jobs_only(capsys):
    line = fails(capsys, "test", "--config", str(PREFERENCES), "--model", "ActorModule", "--print_config")
    assert line.startswith("error: model:") and "SupervisedAgent" in line and "AsymmetricActorCritic" in line


def test_help_describes_the_project_and_lists_jobs_not_models(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "asymmetric actor-critic" in out and "Lightning Trainer command line tool" not in out
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = capsys.readouterr().out
    known = out[out.index("known subclasses", out.index("  --model CONFIG")) :].split(")")[0]
    assert "AsymmetricActorCritic" in known and "CriticSFT" in known
    assert "ActorModule" not in known and "CriticModule" not in known and "Job," not in known


def test_condense_keeps_the_deepest_cause_and_its_key_path():
    message = """Parser key "model":
  Does not validate against any of the Union subtypes
  Subtypes: [<class 'X'>, <class 'NoneType'>]
  Errors:
    - Problem with given class_path 'lightning_asym.jobs.SupervisedAgent':
        Parser key "actor":
          Problem with given class_path 'pkg.Missing':
            module 'pkg' has no attribute 'Missing'
    - Expected a <class 'NoneType'>
  Given value type: <class 'dict'>
  Given value: {'class_path': 'lightning_asym.jobs.SupervisedAgent'}"""
    assert condense(message) == (
        "model.init_args.actor: class_path 'pkg.Missing': module 'pkg' has no attribute 'Missing'"
    )
    assert (
        condense('Parser key "config": File does not exist: x.yaml') == "config: File does not exist: x.yaml"
    )
    assert condense("something plain") == "something plain"
