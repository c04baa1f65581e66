"""LoRA fine-tuning of the base model: QLoRA on CUDA (4-bit nf4 base, bf16 compute), plain LoRA
in float32 on CPU. Loss on the impression tokens only; sequence packing; gradient accumulation to
the recipe's effective batch; a checkpoint every few steps from which a killed run resumes and
ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.adapters import AdapterSpec, write_meta
from model.encoding import collate, encode_pair, pack, unpacked
from model.loader import LoadedModel, load_model
from radflow.errors import TrainingError
from training.dataset import Example
from training.recipe import Recipe

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TrainResult:
    adapter: AdapterSpec
    steps: int
    resumed_from: int  # 0 for a fresh run
    final_loss: float
    train_tokens: int  # supervised and context tokens seen, for tokens/s
    seconds: float


def load_base_for_training(model_path: Path, device: str | None = None) -> LoadedModel:
    loaded = load_model(model_path, device)
    if loaded.quantized:
        from peft import prepare_model_for_kbit_training

        loaded.model = prepare_model_for_kbit_training(loaded.model, use_gradient_checkpointing=True)
    return loaded


def train_adapter(
    model_path: Path,
    examples: list[Example],
    recipe: Recipe,
    family: str,
    out_dir: Path,
    name: str,
    version: str,
    work_dir: Path,
    *,
    max_steps: int | None = None,
    fingerprint: str = "",
    device: str | None = None,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train one adapter into ``out_dir``. ``work_dir`` holds the checkpoint: a run started again
    with the same arguments continues from it."""
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    from tqdm.auto import tqdm

    if not examples:
        raise TrainingError(f"no training examples for adapter {name}")
    started = time.time()
    loaded = load_base_for_training(model_path, device)
    tok = loaded.tokenizer
    torch.manual_seed(recipe.seed)
    config = LoraConfig(r=recipe.r, lora_alpha=recipe.alpha, lora_dropout=recipe.dropout,
                        target_modules=list(recipe.target_modules), task_type="CAUSAL_LM")
    model = get_peft_model(loaded.model, config)
    if loaded.quantized and recipe.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.train()

    pairs = [encode_pair(tok, e.findings, e.impression, e.language, family, recipe.max_length) for e in examples]
    rows = pack(pairs, recipe.max_length) if recipe.packing else unpacked(pairs)
    micro_per_epoch = math.ceil(len(rows) / recipe.micro_batch)
    total_steps = math.ceil(recipe.epochs * micro_per_epoch / recipe.accumulation)
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    schedule = _micro_batches(len(rows), recipe, total_steps)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0)
    warmup = max(1, int(recipe.warmup_ratio * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup)))
    )

    work_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = work_dir / CHECKPOINT
    step = 0
    identity = {"fingerprint": fingerprint, "family": family, "total_steps": total_steps, "rows": len(rows),
                "recipe": repr(recipe)}
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        if state["identity"] != identity:
            log.warning("checkpoint in %s is for other data or settings; starting over", work_dir)
        else:
            set_peft_model_state_dict(model, state["adapter"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            step = state["step"]
            log.info("adapter %s resumes at step %d of %d", name, step, total_steps)
    resumed_from = step
    device_ = next(model.parameters()).device
    tokens = 0
    loss_value = float("nan")
    bar = tqdm(total=total_steps, initial=step, desc=f"refit {name} (template {family})", unit="step",
               disable=not progress)
    while step < total_steps:
        optimizer.zero_grad()
        step_loss = 0.0
        for micro in schedule[step]:
            ids, labels, mask = collate([rows[i] for i in micro], tok.pad_token_id)
            ids, labels, mask = ids.to(device_), labels.to(device_), mask.to(device_)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=loaded.quantized):
                loss = impression_loss(model, ids, mask, labels) / len(schedule[step])
            loss.backward()
            step_loss += loss.item()
            tokens += int(mask.sum())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        step += 1
        loss_value = step_loss
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}")
        if on_step:
            on_step(step, loss_value)
        if step % recipe.checkpoint_every == 0 and step < total_steps:
            _save_checkpoint(checkpoint, {
                "identity": identity, "step": step, "adapter": get_peft_model_state_dict(model),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(),
            })
    bar.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    spec = write_meta(out_dir, name, version, family, base_model_id=loaded.model_id, steps=total_steps,
                      examples=len(examples), final_loss=loss_value, recipe=repr(recipe))
    checkpoint.unlink(missing_ok=True)
    return TrainResult(spec, total_steps, resumed_from, loss_value, tokens, time.time() - started)


def impression_loss(model: Any, ids: Any, mask: Any, labels: Any) -> Any:
    """The causal-LM loss of ``model(labels=...)``, with the output layer applied only where a
    label is (the impression tokens). The full-vocabulary logits of every prompt token were a
    fifth of the forward pass on SmolLM2 (49k x 576 output layer) and most of its memory.

    ids, mask, labels: (batch, length); labels -100 where no loss is taken.
    """
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state  # (batch, length, dim)
    targets = labels[:, 1:]  # token t predicts t+1
    keep = targets != -100  # (batch, length - 1)
    logits = base.get_output_embeddings()(hidden[:, :-1][keep])  # (kept, vocab)
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep])


def _micro_batches(n_rows: int, recipe: Recipe, total_steps: int) -> list[list[list[int]]]:
    """For each optimizer step, its micro-batches of row indices: a seeded shuffle per epoch,
    fixed in advance so a resumed run sees exactly the batches the killed one would have."""
    micro: list[list[int]] = []
    epoch = 0
    while len(micro) < total_steps * recipe.accumulation:
        order = list(range(n_rows))
        random.Random(recipe.seed * 1000 + epoch).shuffle(order)
        micro += [order[i : i + recipe.micro_batch] for i in range(0, n_rows, recipe.micro_batch)]
        epoch += 1
    steps = [micro[s * recipe.accumulation : (s + 1) * recipe.accumulation] for s in range(total_steps)]
    return steps


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous checkpoint whole
