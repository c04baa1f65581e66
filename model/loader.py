"""Loads any local Hugging Face causal LM: 4-bit nf4 on CUDA (bitsandbytes), float32 on CPU."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel.errors import ModelError
from model.acquire.bootstrap import META_FILE

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    model_id: str
    template_family: str
    device: str
    quantized: bool


def load_model(path: Path, device: str | None = None, setting: str = "RADFLOW_MODEL_PATH") -> LoadedModel:
    """Load the model directory at ``path``; errors name ``setting`` so the user knows what to fix."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ModelError(f"{setting}={path} is not a Hugging Face model directory (no config.json)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    kwargs: dict[str, Any] = {}
    quantized = False
    if device.startswith("cuda"):
        try:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.bfloat16,
            )
            kwargs["device_map"] = {"": device}
            quantized = True
        except ImportError:
            log.warning("bitsandbytes is not installed; loading in bfloat16 on %s", device)
            kwargs["dtype"] = torch.bfloat16
    else:
        kwargs["dtype"] = torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{setting}={path} could not be loaded: {exc}") from exc
    if not quantized:
        model.to(device)  # type: ignore[arg-type]  # transformers types the wrapped to() by its first use
    model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    meta_path = path / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    model_id = f"{path.name}@{meta.get('cache_key', 'external')}"
    return LoadedModel(model, tokenizer, model_id, str(meta.get("template_family", "1")), device, quantized)
