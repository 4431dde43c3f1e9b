"""CriticSFT and CriticDataModule: the answer-only loss mask, truncation, full and LoRA training,
validation metrics, the saved critic loading back for review, and the CLI run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from lightning import Trainer

from lightning_asym.backends.base import SamplingParams
from lightning_asym.backends.hf import TransformersBackend
from lightning_asym.errors import UserError
from lightning_asym.jobs.critic_data import CriticDataModule, load_examples
from lightning_asym.jobs.critic_sft import CriticSFT
from lightning_asym.review.format import example_prompt, format_verdict
from lightning_asym.review.verdict import verdict_loss
from lightning_asym.types import Action, CriticExample, JSONLError, Message, ToolCall, write_jsonl

ROOT = Path(__file__).parent.parent
TINY = {"arch": "llama", "tokenizer": "byte", "hidden_size": 32, "num_layers": 1, "num_heads": 2}
POLICY = (
    "You are a retail agent. Authenticate the user by email or name + zip before any order action. "
    "Only pending orders can be cancelled. Confirm the details and get an explicit yes before a write."
)


def conversation(auth: bool) -> list[Message]:
    msgs = [Message("system", POLICY), Message("user", "Hi, I want to cancel order #W1001.")]
    if auth:
        call = ToolCall("find_user_id_by_email", {"email": "ana@example.com"}, id="c0")
        msgs += [
            Message("assistant", "Sure. What is your email?"),
            Message("user", "ana@example.com"),
            Message("assistant", "", tool_calls=[call]),
            Message("tool", '"ana_lee_1"', tool_call_id="c0"),
        ]
    return msgs


def make_examples() -> list[CriticExample]:
    """Retail-like critic examples: approved and rejected actions, train and validation splits."""
    cancel = Action("cancel_pending_order", {"order_id": "#W1001", "reason": "no longer needed"})
    ask = Action("respond", {"content": "Sure. What is your email?"})
    confirm = Action("respond", {"content": "I will cancel #W1001. Shall I proceed (yes/no)?"})
    out = []
    for i in range(3):
        for split in ("train", "validation"):
            tid = f"retail-{split}-{i}"
            out += [
                CriticExample(tid, conversation(False), action=ask, verdict="approve", split=split),
                CriticExample(
                    tid,
                    conversation(False),
                    action=cancel,
                    verdict="revise",
                    feedback="Authenticate the user by email before cancelling.",
                    split=split,
                ),
                CriticExample(tid, conversation(True), action=confirm, verdict="approve", split=split),
                CriticExample(
                    tid,
                    conversation(True),
                    action=cancel,
                    verdict="revise",
                    feedback="Confirm the cancellation and get an explicit yes first.",
                    split=split,
                ),
            ]
    return out


@pytest.fixture(scope="module")
def examples() -> list[CriticExample]:
    return make_examples()


@pytest.fixture
def data_dir(tmp_path: Path, examples) -> Path:
    d = tmp_path / "critic"
    write_jsonl(d / "shard-0.jsonl", examples[:10])
    write_jsonl(d / "shard-1.jsonl", examples[10:])
    return d


def module(**kw) -> CriticSFT:
    """A tiny critic; short prompts (no policy, the last 2 messages) unless a test asks otherwise."""
    return CriticSFT(
        **{
            "model": "tiny",
            "tiny": TINY,
            "max_length": 1024,
            "include_policy": False,
            "max_messages": 2,
            **kw,
        }
    )


def trainer(tmp_path: Path, steps: int, **kw) -> Trainer:
    return Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kw,
    )


# --------------------------------------------------------------------------- tokens


def test_loss_mask_covers_exactly_the_answer_tokens(examples):
    m = module(include_policy=True, max_messages=None)
    backend = TransformersBackend(m.causal_lm, m.tokenizer)  # how GenerativeCritic renders
    ex = examples[1]
    enc = m.encoder.encode(ex)
    prompt = m.tokenizer(backend.render(example_prompt(ex), True), add_special_tokens=False)["input_ids"]
    answer = m.tokenizer(format_verdict("revise", ex.feedback) + "<|im_end|>", add_special_tokens=False)[
        "input_ids"
    ]
    assert enc.ids == prompt + answer and enc.answer_start == len(prompt)
    batch = m.encoder.collate([enc, m.encoder.encode(examples[0])])
    labels = batch["labels"]
    assert (labels[0] != -100).nonzero().flatten().tolist() == list(range(len(prompt), len(enc.ids)))
    assert labels[0, len(prompt) :].tolist() == answer
    short = m.encoder.encode(examples[0])  # padded row: nothing past its end is scored
    assert (labels[1, len(short.ids) :] == -100).all() and batch["attention_mask"][1].sum() == len(short.ids)
    fb = batch["feedback_mask"][0].nonzero().flatten().tolist()
    assert m.tokenizer.decode([enc.ids[i] for i in fb]) == ex.feedback
    assert not batch["feedback_mask"][1].any()  # an approve answer has no feedback


def test_a_long_prompt_keeps_the_latest_messages_that_fit_and_the_whole_answer(examples):
    ex = examples[3]  # five transcript messages
    enc = module(max_messages=None).encoder
    answer, _ = enc.answer(ex.verdict, ex.feedback)
    by_k = {k: enc.prompt_ids(ex, k) for k in range(1, 6)}
    assert [len(by_k[k]) for k in range(1, 6)] == sorted({len(p) for p in by_k.values()})

    fits_3 = module(max_messages=None, max_length=len(answer) + len(by_k[3])).encoder.encode(ex)
    assert fits_3.ids == by_k[3] + answer and fits_3.shortened and fits_3.dropped == 0
    head = by_k[5][:40]  # the instruction still opens the prompt, as at review time
    assert fits_3.ids[:40] == head and fits_3.ids[fits_3.answer_start :] == answer

    assert module(max_messages=3, max_length=len(answer) + len(by_k[3])).encoder.encode(ex).shortened is False

    tight = module(max_messages=None, max_length=len(answer) + len(by_k[1]) - 5).encoder.encode(ex)
    assert tight.ids == by_k[1][5:] + answer and tight.dropped == 5  # last resort: cut the first tokens
    assert module().tokenizer.decode(tight.ids[tight.answer_start :]) == (
        format_verdict("revise", ex.feedback) + "<|im_end|>"
    )
    with pytest.raises(UserError, match=r"model\.init_args\.max_length"):
        module(max_length=20).encoder.encode(ex)


def test_verdict_scores_match_a_separate_pass_on_the_shared_prefix(examples):
    m = module().eval()
    batch = examples[:4]
    with torch.no_grad():
        p = m._step(batch, verdicts=True)["p_revise"]
        encoded = [m.encoder.encode(e) for e in batch]
        probe = m.encoder.probe_batch(encoded)
        logits = m.causal_lm(input_ids=probe["input_ids"], attention_mask=probe["attention_mask"]).logits
        at = logits[torch.arange(len(batch)), probe["verdict_pos"]]
        ref = torch.sigmoid(at[:, m.encoder.revise_id] - at[:, m.encoder.approve_id])
    assert torch.allclose(p, ref, atol=1e-5)


def test_verdict_loss_is_the_mean_binary_cross_entropy_of_the_verdicts():
    logit, revise = torch.tensor([2.0, -1.0, 0.5, -3.0]), torch.tensor([1, 0, 0, 1])
    ref = 0.0
    for z, y in zip(logit.tolist(), revise.tolist()):
        p = 1 / (1 + math.exp(-z))
        ref -= math.log(p) if y else math.log(1 - p)
    assert verdict_loss(logit, revise).item() == pytest.approx(ref / 4, rel=1e-6)


def test_verdict_weight_adds_the_verdict_loss_to_the_token_loss(examples, tmp_path):
    torch.manual_seed(0)
    m = module(verdict_weight=2.0)
    batch = [e for e in examples if e.split == "train"][:4]
    logged = {}
    m.log = lambda name, value, **kw: logged.__setitem__(name, float(value))
    m.optimizers = lambda: torch.optim.SGD(m.parameters(), lr=0.0)
    loss = m.training_step(batch, 0)
    with torch.no_grad():
        out = m._step(batch, verdicts=True)
        ref = out["losses"].mean() + 2.0 * verdict_loss(out["revise_logit"], out["revise"])
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert logged["train/verdict_loss"] > 0 and loss.requires_grad
    with pytest.raises(UserError, match="model.init_args.verdict_weight"):
        module(verdict_weight=-1.0)


# --------------------------------------------------------------------------- data


def test_data_module_splits_shards_and_reports_bad_paths(data_dir, tmp_path, examples):
    dm = CriticDataModule(str(data_dir), batch_size=5)
    dm.setup("fit")
    assert len(dm.examples["train"]) == len(dm.examples["validation"]) == len(examples) // 2
    batch = next(iter(dm.train_dataloader()))
    assert len(batch) == 5 and all(isinstance(e, CriticExample) for e in batch)
    small = CriticDataModule(str(data_dir), max_examples=3)
    small.setup("fit")
    assert len(small.examples["train"]) == 3
    with pytest.raises(UserError, match=r"data\.init_args\.path.*predict"):
        CriticDataModule(str(tmp_path / "nowhere")).setup("fit")
    only_val = tmp_path / "val.jsonl"
    write_jsonl(only_val, [e for e in examples if e.split == "validation"])
    with pytest.raises(UserError, match=r"data\.init_args\.path.*no examples with split 'train'.*predict"):
        CriticDataModule(str(only_val)).setup("fit")
    with (data_dir / "shard-1.jsonl").open("a") as f:
        f.write("{not json\n")
    with pytest.raises(JSONLError, match=r"shard-1\.jsonl:15"):
        load_examples(data_dir)


# --------------------------------------------------------------------------- training


def test_full_fine_tuning_lowers_the_training_loss(data_dir, tmp_path, examples):
    torch.manual_seed(0)
    m = module(lr=1e-2, save_dir=str(tmp_path / "critic"))
    train = [e for e in examples if e.split == "train"]
    with torch.no_grad():
        before = m.eval()._step(train, verdicts=False)["losses"].mean().item()
    m.train()
    trainer(tmp_path, 9, limit_val_batches=0).fit(m, CriticDataModule(str(data_dir), batch_size=4))
    with torch.no_grad():
        after = m.eval()._step(train, verdicts=False)["losses"].mean().item()
    assert after < 0.7 * before, (before, after)
    assert (tmp_path / "critic" / "config.json").is_file() and m.saved_dir == tmp_path / "critic"


def test_lora_trains_only_adapters_and_the_merged_critic_loads_back(data_dir, tmp_path, examples):
    m = module(
        method="lora",
        lora={"r": 4, "alpha": 8, "top_layers": 1},
        tiny={**TINY, "num_layers": 2},
        lr=1e-2,
        save_dir=str(tmp_path / "critic"),
    )
    m.configure_model()  # built late (the Trainer would build it here); then its parameters exist
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n and ".layers.1." in n for n in trainable)
    frozen = {n: p.detach().clone() for n, p in m.named_parameters() if not p.requires_grad}
    adapters = {n: p.detach().clone() for n, p in m.named_parameters() if p.requires_grad}
    fit = trainer(tmp_path, 4, limit_val_batches=0)
    fit.fit(m, CriticDataModule(str(data_dir), batch_size=4))
    params = dict(m.named_parameters())
    assert all(torch.equal(params[n], p) for n, p in frozen.items())
    assert any(not torch.equal(params[n], p) for n, p in adapters.items())

    saved = tmp_path / "critic"
    assert not list(saved.glob("adapter_*"))  # merged: a plain transformers directory
    backend = TransformersBackend(model=str(saved))
    ids = torch.tensor([m.encoder.encode(examples[1]).ids])
    with torch.no_grad():
        merged = backend.model(input_ids=ids).logits
        adapted = m.eval().model(input_ids=ids).logits
    assert torch.allclose(merged, adapted, atol=1e-4)
    out = backend.complete([example_prompt(examples[1])], sampling=SamplingParams(max_new_tokens=6))
    assert out[0].num_completion_tokens > 0

    fit.save_checkpoint(tmp_path / "lora.ckpt")  # adapters only; the base is rebuilt from `tiny`
    state = torch.load(tmp_path / "lora.ckpt", weights_only=False)["state_dict"]
    assert set(state) == set(adapters)
    resumed = CriticSFT.load_from_checkpoint(tmp_path / "lora.ckpt").eval()
    with torch.no_grad():
        assert torch.equal(resumed.model(input_ids=ids).logits, adapted)


def test_bad_method_and_lora_options_name_the_config_key():
    with pytest.raises(UserError, match=r"model\.init_args\.method"):
        module(method="qlora")
    # the model is built in configure_model (the start of fit), where LoRA options meet it
    with pytest.raises(UserError, match=r"model\.init_args\.lora"):
        module(method="lora", lora={"target_modules": ["no_such_proj"]}).configure_model()
    with pytest.raises(UserError, match=r"model\.init_args\.lora"):
        module(method="lora", lora={"rank": 4}).configure_model()
    with pytest.raises(UserError, match=r"model\.init_args\.lora\.top_layers"):
        module(method="lora", lora={"top_layers": 3}).configure_model()


def test_the_saved_critic_reviews_through_generative_critic(data_dir, tmp_path, examples):
    generative = pytest.importorskip("lightning_asym.review.generative")
    from lightning_asym.review.base import ReviewRequest
    from lightning_asym.types import Task

    m = module(save_dir=str(tmp_path / "critic"), include_policy=False, max_messages=3)
    trainer(tmp_path, 1, limit_val_batches=0).fit(m, CriticDataModule(str(data_dir), batch_size=4))
    critic = generative.GenerativeCritic(str(tmp_path / "critic"), include_policy=False, max_messages=3)
    ex = examples[3]
    req = ReviewRequest(ex.messages, ex.text, ex.action, None, Task(ex.task_id, "test", ""))
    # the critic renders the very tokens the module trained on
    text = critic.backend.render(critic.prompt(req), True)
    prompt_ids = critic.backend.tokenizer(text, add_special_tokens=False)["input_ids"]
    enc = m.encoder.encode(ex)
    assert prompt_ids == enc.ids[: enc.answer_start]
    (review,) = critic.review([req])
    assert review.verdict in ("approve", "revise") and review.num_tokens > 0


def test_validation_logs_verdict_metrics_and_feedback_loss(data_dir, tmp_path):
    m = module()
    metrics = trainer(tmp_path, 1).validate(m, CriticDataModule(str(data_dir), batch_size=4), verbose=False)[
        0
    ]
    for key in (
        "val/loss",
        "val/feedback_loss",
        "val/verdict_accuracy",
        "val/precision",
        "val/recall",
        "val/f1",
    ):
        assert key in metrics and metrics[key] == metrics[key], key  # present and not NaN
    assert 0.0 <= metrics["val/verdict_accuracy"] <= 1.0
    assert metrics["val/feedback_loss"] > 0 and metrics["val/loss"] > 0


def test_cli_fit_writes_the_critic(data_dir, tmp_path, monkeypatch):
    from lightning_asym.cli import main

    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            "--config",
            str(ROOT / "configs" / "critic" / "sft_tiny.yaml"),
            "--data.init_args.path",
            str(data_dir),
            "--trainer.max_steps",
            "3",
            "--trainer.val_check_interval",
            "3",
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    (run,) = (tmp_path / "runs" / "critic_sft_tiny").iterdir()
    assert (run / "critic" / "config.json").is_file() and (run / "critic" / "tokenizer.json").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 3 and "train/loss" in metrics and "val/f1" in metrics
    TransformersBackend(model=str(run / "critic"))  # loads as a plain model directory


# --------------------------------------------------------------------------- review_config.json, privileged, calibration


def test_fit_saves_the_prompt_options_in_review_config_and_validate_holds_to_them(data_dir, tmp_path):
    critic = tmp_path / "critic"
    m = module(save_dir=str(critic), include_policy=False, max_messages=3, earlier_actions=True)
    trainer(tmp_path, 1, limit_val_batches=0).fit(m, CriticDataModule(str(data_dir), batch_size=4))
    saved = json.loads((critic / "review_config.json").read_text())
    assert saved == {
        "include_policy": False,
        "max_messages": 3,
        "earlier_actions": True,
        "privileged": False,
        "few_shot": False,
        "max_length": 1024,
        "revise_threshold": 0.5,
        "calibration": None,
    }
    with pytest.raises(UserError, match=r"model\.init_args\.max_messages=2 \(trained with 3\)"):
        module(model=str(critic), include_policy=False, max_messages=2, earlier_actions=True)
    with pytest.raises(UserError, match=r"model\.init_args\.earlier_actions=False \(trained with True\)"):
        module(model=str(critic), include_policy=False, max_messages=3)


def test_privileged_text_is_in_the_prompt_only_when_asked(examples):
    ex = CriticExample(**{**examples[1].__dict__, "privileged": "HIDDEN-GOAL cancel #W1001"})
    for privileged in (True, False):
        enc = module(privileged=privileged).encoder
        text = enc.tokenizer.decode(enc.prompt_ids(ex))
        assert ("HIDDEN-GOAL" in text) is privileged


def test_privileged_training_on_data_without_it_says_what_to_do(data_dir, tmp_path):
    with pytest.raises(UserError, match=r"model\.init_args\.privileged is true.*datagen_privileged"):
        trainer(tmp_path, 1).fit(module(privileged=True), CriticDataModule(str(data_dir), batch_size=4))


def test_validate_on_the_inloop_split_calibrates_the_saved_critic(examples, tmp_path):
    data = tmp_path / "data"
    inloop = [CriticExample(**{**e.__dict__, "split": "inloop"}) for e in examples if e.split == "validation"]
    write_jsonl(data / "train.jsonl", [e for e in examples if e.split == "train"])
    write_jsonl(data / "inloop.jsonl", inloop)
    critic = tmp_path / "critic"
    module().save_critic(critic)
    dm = CriticDataModule(str(data), batch_size=4, val_split="inloop")
    metrics = trainer(tmp_path, 1).validate(module(model=str(critic)), dm, verbose=False)[0]
    out = json.loads((tmp_path / "calibration.json").read_text())
    saved = json.loads((critic / "review_config.json").read_text())
    assert out["summary"]["examples"] == len(inloop) and out["summary"]["split"] == "inloop"
    best = max(out["curve"], key=lambda p: p["gain"])
    assert saved["revise_threshold"] == out["summary"]["revise_threshold"] == pytest.approx(best["threshold"])
    assert (
        saved["calibration"]["chosen"]["gain"]
        == best["gain"]
        == pytest.approx(metrics["val/calibrated_gain"])
    )
    assert saved["max_messages"] == 2 and saved["include_policy"] is False  # the options stay
    # each example's score, for error analysis: the ones the curve was computed from
    rows = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert sorted((r["task_id"], r["verdict"]) for r in rows) == sorted(
        (e.task_id, e.verdict) for e in inloop
    )
    flagged = sum(r["p_revise"] >= saved["revise_threshold"] for r in rows)
    assert flagged == out["summary"]["chosen"]["tp"] + out["summary"]["chosen"]["fp"]
    with pytest.raises(UserError, match=r"no examples with split 'inloop'"):
        CriticDataModule(str(data_dir_without_inloop(tmp_path, examples)), val_split="inloop").setup(
            "validate"
        )


def data_dir_without_inloop(tmp_path: Path, examples) -> Path:
    d = tmp_path / "plain"
    write_jsonl(d / "train.jsonl", examples)
    return d
