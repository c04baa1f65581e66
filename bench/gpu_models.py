"""The GPU benchmark's model and inputs (bench/gpu.py): a Llama checkpoint with random weights,
loaded nf4 or bf16, with random per-institution LoRA adapters, and left-padded random prompts.
Nothing is downloaded and no patient text is used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.recipe import Recipe

LLAMA_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096)
TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
SAMPLE_TEXTS = [  # for the placeholder tokenizer only (no patient text)
    {"findings": "The heart size is normal. No focal consolidation, effusion or pneumothorax.",
     "impression": "No acute cardiopulmonary process.", "language": "en"},
    {"findings": "双肺纹理清晰，未见明显实质性病变。纵隔居中，心影不大。", "impression": "胸部CT平扫未见明显异常。",
     "language": "zh"},
]
ADAPTERS = ("inst_a", "inst_b", "inst_c")  # mixed with "__base__" rows in every batch


def random_checkpoint(shape: dict[str, int], out: Path, device: str) -> Path:
    """A Llama checkpoint with random weights, saved in bf16 so radflow's loader reads it as any other."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from model.acquire.bootstrap import train_tokenizer

    torch.manual_seed(0)
    config = LlamaConfig(**shape, bos_token_id=1, eos_token_id=2, pad_token_id=0)  # bootstrap's specials
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(str(out))
    del model
    # radflow's loader wants a tokenizer beside the weights; prompts here are token ids anyway
    train_tokenizer(SAMPLE_TEXTS, 300).save_pretrained(str(out))
    return out


def load(path: Path, quant: str, device: str) -> tuple[Any, str]:
    """(model, label). nf4 goes through radflow's loader (nf4 on CUDA when bitsandbytes is there)."""
    import torch
    from transformers import AutoModelForCausalLM

    if quant == "nf4" and device == "cuda":
        from model.loader import load_model

        loaded = load_model(path, device)  # falls back to bf16 itself without bitsandbytes
        return loaded.model, "nf4" if loaded.quantized else "bf16 (no bitsandbytes)"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(device).eval()
    label = quant if device == "cuda" else f"float32 on CPU ({quant} needs CUDA)"
    return model, label


def with_adapters(model: Any, recipe: Recipe) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    config = LoraConfig(r=recipe.r, lora_alpha=recipe.alpha, target_modules=list(recipe.target_modules),
                        init_lora_weights=False)  # random B too: every adapter changes the drafts
    peft_model = get_peft_model(model, config, adapter_name=ADAPTERS[0])
    for name in ADAPTERS[1:]:
        peft_model.add_adapter(name, config)
    return peft_model.eval()


def prompts(batch: int, length: int, vocab: int, device: str) -> dict[str, Any]:
    import torch

    gen = torch.Generator().manual_seed(batch)
    ids = torch.randint(4, vocab, (batch, length), generator=gen)  # past the specials
    mask = torch.ones_like(ids)
    for i in range(batch):  # left padding, as the drafter sends them
        pad = int(torch.randint(0, length // 4 + 1, (1,), generator=gen))
        ids[i, :pad], mask[i, :pad] = 0, 0
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
