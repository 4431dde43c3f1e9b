"""Trained models out of lightning_asym: plain transformers directories with a model card.

`ActorModule.export(dir)` writes the actor as a causal LM directory that
`TransformersBackend(model=dir)` or `AutoModelForCausalLM.from_pretrained(dir)` loads, with its
tokenizer (chat template included). `CriticModule.export(dir)` writes the critic's trunk
(`AutoModel.from_pretrained(dir)`), its tokenizer, the value head (`value_head.safetensors`)
and how it reads a conversation (`critic.json`); `CriticModule.from_export(dir)` rebuilds
the critic. Each directory gets a README.md model card: how it was trained (text the
training job passes in) and the prompt options it expects.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from lightning_asym.actor import ActorModule
    from lightning_asym.critic import CriticModule

CRITIC_OPTIONS = "critic.json"
VALUE_HEAD = "value_head.safetensors"


def _save_pretrained(model: torch.nn.Module, path: Path) -> None:
    try:
        model.save_pretrained(path)
    except Exception:  # noqa: BLE001  (a GGUF-loaded model refuses to save; a fresh copy does not)
        fresh = type(model)(model.config)
        fresh.load_state_dict(model.state_dict())
        fresh.save_pretrained(path)


def _card(path: Path, title: str, tags: list[str], sections: list[tuple[str, str]]) -> None:
    head = "---\nlibrary_name: transformers\ntags:\n" + "".join(f"- {t}\n" for t in tags) + "---\n"
    body = "".join(f"\n## {name}\n\n{text.strip()}\n" for name, text in sections if text.strip())
    (path / "README.md").write_text(f"{head}\n# {title}\n{body}")


def export_actor(actor: ActorModule, path: str | Path, training: str = "") -> Path:
    """Write `actor` to `path` (see the module docstring); returns the directory."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    backend = actor.backend
    _save_pretrained(actor.model, path)
    actor.tokenizer.save_pretrained(path)
    options = {
        "max_context": backend.max_context,
        "tools_first": backend.tools_first,
        "sampling": asdict(backend.sampling),
    }
    (path / "lightning_asym.json").write_text(json.dumps({"role": "actor", **options}, indent=2) + "\n")
    prompt = (
        "Conversations are rendered with the tokenizer's chat template (saved here) by "
        "`lightning_asym.backends.TransformersBackend`: the tool schemas and the tool-call format "
        '(`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`) go into the system message'
        + (" before its own text" if backend.tools_first else " after its own text")
        + ", tool results come back as user messages in `<tool_response>` tags unless the template "
        "handles the tool role.\n\n"
        f"- sampling during training: `{json.dumps(options['sampling'])}`\n"
        f"- longest context: {backend.max_context} tokens\n\n"
        "These options are also in `lightning_asym.json`."
    )
    use = (
        "```python\nfrom lightning_asym.backends import TransformersBackend\n\n"
        f'actor = TransformersBackend(model="{path}")\n```\n\n'
        "or `transformers.AutoModelForCausalLM.from_pretrained(...)` with `AutoTokenizer`."
    )
    _card(path, "lightning_asym actor", ["lightning_asym", "ppo", "actor"],
          [("How it was trained", training), ("Prompt", prompt), ("Use", use)])  # fmt: skip
    return path


def critic_options(critic: CriticModule) -> dict[str, Any]:
    """How the critic reads a conversation: what `CriticModule.from_export` passes back."""
    return {
        "privileged": critic.privileged,
        "include_system": critic.include_system,
        "max_length": critic.max_length,
    }


def export_critic(critic: CriticModule, path: str | Path, training: str = "") -> Path:
    """Write `critic` to `path` (see the module docstring); returns the directory."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _save_pretrained(critic.backbone, path)
    critic.tokenizer.save_pretrained(path)
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in critic.value_head.state_dict().items()},
        path / VALUE_HEAD,
    )
    options = critic_options(critic)
    (path / CRITIC_OPTIONS).write_text(json.dumps({"role": "value_critic", **options}, indent=2) + "\n")
    prompt = (
        "The critic reads the conversation as plain text, one `role: content` line per message "
        f"(system message {'included' if critic.include_system else 'left out'}), tokenized with "
        "its own tokenizer (saved here), and the value head (`value_head.safetensors`, a linear "
        "layer on the trunk's last hidden state) reads V(s_t) at the last token of each state: the "
        "conversation just before the actor's t-th action.\n\n"
        + (
            "- privileged: the text opens with the task's hidden information after a header "
            "(`lightning_asym.critic.PRIVILEGED_HEADER`)\n"
            if critic.privileged
            else "- not privileged: it reads only what the actor saw\n"
        )
        + f"- longest input: {critic.max_length} tokens (longer conversations keep their latest tokens)\n\n"
        f"These options are in `{CRITIC_OPTIONS}`."
    )
    use = (
        "```python\nfrom lightning_asym.critic import CriticModule\n\n"
        f'critic = CriticModule.from_export("{path}")\n'
        "values, mask = critic.values(trajectories)\n```"
    )
    _card(path, "lightning_asym value critic", ["lightning_asym", "ppo", "value-model"],
          [("How it was trained", training), ("How it reads", prompt), ("Use", use)])  # fmt: skip
    return path


def read_critic(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The reading options and the value-head weights of an `export_critic` directory (what
    `CriticModule.from_export` builds the critic from)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / CRITIC_OPTIONS).is_file():
        raise FileNotFoundError(
            f"{path / CRITIC_OPTIONS} not found: is {path} a directory CriticModule.export wrote?"
        )
    options = json.loads((path / CRITIC_OPTIONS).read_text())
    options.pop("role", None)
    return options, load_file(path / VALUE_HEAD)
