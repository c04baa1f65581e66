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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel.errors import TrainingError
from model.adapters import AdapterSpec, write_meta
from model.encoding import collate, encode_pair, pack, unpacked
from model.loader import LoadedModel, load_model
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
    from tqdm.auto import tqdm

    if not examples:
        raise TrainingError(f"no training examples for adapter {name}")
    started = time.time()
    loaded = load_base_for_training(model_path, device)
    model = _lora_model(loaded, recipe)
    rows = _training_rows(loaded, examples, recipe, family)
    total_steps = _total_steps(len(rows), recipe, max_steps)
    trainer = _Trainer.create(model, loaded, recipe, total_steps)
    schedule = _micro_batches(len(rows), recipe, total_steps)

    work_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = work_dir / CHECKPOINT
    # a checkpoint is only resumed by the run that wrote it: same data, template, schedule and recipe
    identity = {"fingerprint": fingerprint, "family": family, "total_steps": total_steps, "rows": len(rows),
                "recipe": repr(recipe)}
    step = resumed_from = trainer.resume(checkpoint, identity, f"adapter {name}")
    tokens = 0
    loss_value = float("nan")
    bar = tqdm(total=total_steps, initial=step, desc=f"refit {name} (template {family})", unit="step",
               disable=not progress)
    while step < total_steps:
        loss_value, step_tokens = trainer.step([rows[i] for i in micro] for micro in schedule[step])
        tokens += step_tokens
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}")
        if on_step:
            on_step(step, loss_value)
        if step % recipe.checkpoint_every == 0 and step < total_steps:
            trainer.save(checkpoint, identity, step)
    bar.close()
    spec = _save_adapter(model, out_dir, loaded, name, version, family, total_steps, len(examples), loss_value, recipe)
    checkpoint.unlink(missing_ok=True)
    return TrainResult(spec, total_steps, resumed_from, loss_value, tokens, time.time() - started)


def _lora_model(loaded: LoadedModel, recipe: Recipe) -> Any:
    """The base wrapped in fresh LoRA layers, in training mode. Seeded here, before the wrap, as
    the LoRA A matrices are drawn from torch's generator."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(recipe.seed)
    config = LoraConfig(r=recipe.r, lora_alpha=recipe.alpha, lora_dropout=recipe.dropout,
                        target_modules=list(recipe.target_modules), task_type="CAUSAL_LM")
    model = get_peft_model(loaded.model, config)
    if loaded.quantized and recipe.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    return model


def _training_rows(loaded: LoadedModel, examples: list[Example], recipe: Recipe, family: str) -> list[Any]:
    """The findings/impression pairs as token rows in the template ``family``, packed when the recipe asks."""
    tok = loaded.tokenizer
    pairs = [encode_pair(tok, e.findings, e.impression, e.language, family, recipe.max_length) for e in examples]
    return pack(pairs, recipe.max_length) if recipe.packing else unpacked(pairs)


def _total_steps(n_rows: int, recipe: Recipe, max_steps: int | None) -> int:
    """Optimizer steps for the recipe's epochs at its effective batch, capped by ``max_steps``."""
    micro_per_epoch = math.ceil(n_rows / recipe.micro_batch)
    total_steps = math.ceil(recipe.epochs * micro_per_epoch / recipe.accumulation)
    return total_steps if max_steps is None else min(total_steps, max_steps)


@dataclass
class _Trainer:
    """The LoRA model with its optimizer and learning-rate schedule: one optimizer step at a time,
    and the checkpoint that lets a killed run go on exactly where it stopped."""

    model: Any
    params: list[Any]
    optimizer: Any
    scheduler: Any
    pad_token_id: int
    quantized: bool
    cpu_bf16: bool = False

    @classmethod
    def create(cls, model: Any, loaded: LoadedModel, recipe: Recipe, total_steps: int) -> _Trainer:
        import torch

        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0)
        # linear warm-up, then linear decay to zero at the last step
        warmup = max(1, int(recipe.warmup_ratio * total_steps))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup)))
        )
        return cls(model, params, optimizer, scheduler, loaded.tokenizer.pad_token_id, loaded.quantized,
                   recipe.cpu_bf16)

    def step(self, micro_batches: Iterable[list[Any]]) -> tuple[float, int]:
        """One optimizer step over its micro-batches (gradient accumulation); its loss and tokens."""
        import torch

        micro_batches = list(micro_batches)
        device = next(self.model.parameters()).device
        # QLoRA computes in bf16 on CUDA; on CPU only when the recipe asks (the weights stay float32)
        autocast = self.quantized if device.type == "cuda" else (device.type == "cpu" and self.cpu_bf16)
        self.optimizer.zero_grad()
        step_loss, tokens = 0.0, 0
        for batch in micro_batches:
            ids, labels, mask = collate(batch, self.pad_token_id)
            ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = impression_loss(self.model, ids, mask, labels) / len(micro_batches)
            loss.backward()
            step_loss += loss.item()
            tokens += int(mask.sum())
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        return step_loss, tokens

    def resume(self, checkpoint: Path, identity: dict[str, Any], what: str) -> int:
        """The step to start at: the checkpoint's when it was written for ``identity``, else 0."""
        import torch
        from peft import set_peft_model_state_dict

        if not checkpoint.is_file():
            return 0
        state = torch.load(checkpoint, weights_only=False)
        if state["identity"] != identity:
            log.warning("checkpoint in %s is for other data or settings; starting over", checkpoint.parent)
            return 0
        set_peft_model_state_dict(self.model, state["adapter"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        step: int = state["step"]
        log.info("%s resumes at step %d of %d", what, step, identity["total_steps"])
        return step

    def save(self, checkpoint: Path, identity: dict[str, Any], step: int) -> None:
        import torch
        from peft import get_peft_model_state_dict

        _save_checkpoint(checkpoint, {
            "identity": identity, "step": step, "adapter": get_peft_model_state_dict(self.model),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "rng": torch.get_rng_state(),
        })


def _save_adapter(model: Any, out_dir: Path, loaded: LoadedModel, name: str, version: str, family: str,
                  steps: int, examples: int, final_loss: float, recipe: Recipe) -> AdapterSpec:
    """The adapter weights, and beside them what produced them (base model, template, steps, recipe)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    return write_meta(out_dir, name, version, family, base_model_id=loaded.model_id, steps=steps,
                      examples=examples, final_loss=final_loss, recipe=repr(recipe))


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
