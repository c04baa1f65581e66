"""A GGUF file into an ordinary Hugging Face directory (config, safetensors, tokenizer, chat template).

transformers reads GGUF and dequantizes it to float32; the saved directory is then loaded by
model/loader.py like any checkpoint (nf4 on CUDA, float32 on CPU), with no GGUF code on the hot path.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kernel.errors import ModelError

log = logging.getLogger(__name__)


def load_gguf(gguf_path: Path, rebuild_tokenizer: bool) -> tuple[Any, Any]:
    """(model, tokenizer) of a GGUF file, the model in float32 on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, name = str(gguf_path.parent), gguf_path.name
    try:
        if rebuild_tokenizer:
            from model.acquire.gguf_tokenizer import rebuild_tokenizer as rebuild

            tokenizer = rebuild(gguf_path)
        else:
            from model.acquire.gguf_tokenizer import special_token_ids

            tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
            for role, token_id in special_token_ids(gguf_path).items():
                setattr(tokenizer, role, tokenizer.convert_ids_to_tokens(token_id))
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"transformers cannot read {name}: {exc}") from exc
    model.eval()
    return model, tokenizer


def _forget_gguf_quantizer(model: Any) -> None:
    """A GGUF-loaded model carries the marker of its (already undone) quantization, and
    ``save_pretrained`` refuses a model it thinks is quantized. The weights are plain float32
    after dequantization, so the marker is dropped."""
    for attr in ("hf_quantizer", "quantization_method"):
        if getattr(model, attr, None) is not None:
            setattr(model, attr, None)
    for attr in ("is_quantized", "is_loaded_in_4bit", "is_loaded_in_8bit"):
        if getattr(model, attr, False):
            setattr(model, attr, False)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def save_hf(model: Any, tokenizer: Any, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    _forget_gguf_quantizer(model)
    # cleaning up "tokenization spaces" deletes real spaces before punctuation in byte-level BPE text
    tokenizer.clean_up_tokenization_spaces = False
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if not (out_dir / "config.json").is_file():
        raise ModelError(f"saving the converted model into {out_dir} wrote no config.json")
