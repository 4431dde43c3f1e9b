"""`review_config.json` beside a critic directory: its settings fill what the constructor leaves unset."""

from __future__ import annotations

import json
import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from lightning_asym.envs.retail import RetailEnv
from lightning_asym.errors import UserError
from lightning_asym.review import GenerativeCritic, ReviewRequest
from lightning_asym.review.generative import BUILTIN
from lightning_asym.review.settings import REVIEW_CONFIG, read_review_config
from lightning_asym.types import Action, Message, Task

SAVED = {
    "include_policy": False,
    "max_messages": 3,
    "earlier_actions": True,
    "few_shot": True,
    "privileged": False,
    "revise_threshold": 0.7,
    "val_f1": 0.9,  # other keys (metrics, provenance) are ignored
}


@pytest.fixture(scope="module")
def critic_dir(tmp_path_factory):
    from lightning_asym.backends.hf import TransformersBackend

    backend = TransformersBackend("tiny", tiny={"hidden_size": 32})
    path = tmp_path_factory.mktemp("critic")
    backend.model.save_pretrained(path)
    backend.tokenizer.save_pretrained(path)
    return path


def write(path, data) -> None:
    (path / REVIEW_CONFIG).write_text(json.dumps(data) if not isinstance(data, str) else data)


def options(critic: GenerativeCritic) -> dict:
    return {k: getattr(critic, k) for k in BUILTIN}


def request(privileged: str | None) -> ReviewRequest:
    messages = [Message("system", content="POLICY"), *(Message("user", content=f"m{i}") for i in range(6))]
    task = Task("t", "test", "")
    # the worked examples a retail episode's requests carry (few_shot uses them)
    examples = RetailEnv().review_examples()
    return ReviewRequest(
        messages, "", Action.reply("ok"), None, task, privileged=privileged, examples=examples
    )


def test_without_a_file_the_builtin_defaults(critic_dir):
    (critic_dir / REVIEW_CONFIG).unlink(missing_ok=True)
    critic = GenerativeCritic(str(critic_dir), dtype="float32")
    assert options(critic) == BUILTIN and critic.settings_from_file == {}


def test_the_file_fills_unset_settings_and_explicit_ones_win(critic_dir):
    write(critic_dir, SAVED)
    critic = GenerativeCritic(str(critic_dir), dtype="float32")
    expected = {k: v for k, v in SAVED.items() if k in BUILTIN}
    assert options(critic) == expected and critic.settings_from_file == expected
    prompt = critic.prompt(request("the secret"))
    assert len(prompt) == 6  # system, two worked examples, the request
    assert "POLICY" not in prompt[0].content and "the secret" not in prompt[-1].content
    assert "m5" in prompt[-1].content and "m2" not in prompt[-1].content  # the latest 3 messages
    assert "Tool calls the agent made earlier:\n(none)" in prompt[-1].content  # earlier_actions

    explicit = GenerativeCritic(
        str(critic_dir), dtype="float32", include_policy=True, max_messages="all", revise_threshold=0.2
    )
    assert options(explicit) == {
        **expected,
        "include_policy": True,
        "max_messages": None,
        "revise_threshold": 0.2,
    }
    assert explicit.settings_from_file == {"few_shot": True, "privileged": False, "earlier_actions": True}
    assert "m0" in explicit.prompt(request(None))[-1].content

    # a backend object is not a directory: no file is read
    assert options(GenerativeCritic(explicit.backend)) == BUILTIN


def test_a_critic_trained_with_privileged_information_warns_without_it(critic_dir, caplog):
    write(critic_dir, {"privileged": True})
    critic = GenerativeCritic(str(critic_dir), dtype="float32")
    assert "the secret" in critic.prompt(request("the secret"))[-1].content
    with caplog.at_level(logging.WARNING):
        critic.prompt(request(None))
    assert "supervision.privileged" in caplog.text


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", r"review_config\.json:1: not valid JSON"),
        ([1, 2], r"expected a JSON object"),
        ({"max_messages": 0}, r"max_messages must be an integer >= 1 or null"),
        ({"revise_threshold": 2}, r"revise_threshold must be a number in \[0, 1\]"),
        ({"few_shot": "yes"}, r"few_shot must be true or false"),
        ({"earlier_actions": 1}, r"earlier_actions must be true or false"),
    ],
)
def test_a_bad_file_names_the_file_and_the_key(tmp_path, content, match):
    write(tmp_path, content)
    with pytest.raises(UserError, match=match):
        read_review_config(tmp_path)
    assert read_review_config(tmp_path / "elsewhere") == {}
