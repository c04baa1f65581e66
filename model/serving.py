"""How a batch of prompts becomes impression tokens: the decoding paths behind ``RADFLOW_DECODE``.

- ``hf``: transformers' ``generate``, the reference every other path is measured against.
- ``greedy``: radflow's own greedy loop. One forward a token on a KV cache, logits for the last
  position only, no logits processors or stopping-criteria objects. Same tokens as ``hf``.
- ``int8``: the greedy loop with the frozen linear layers (and the output layer) run as dynamic
  int8 on CPU (per-channel weights, activations quantized per call; AVX-512 VNNI where the CPU
  has it). Drafts may differ from ``hf`` in a word here and there; ``bench/cpu_model.py``
  measures how much (ROUGE delta, identical share). The float32 model is left as loaded: the
  int8 copies are swapped in for the call only, so adapters load, unload and train as before.
- ``static``: ``generate`` with a static KV cache, compiled by ``torch.compile`` on CUDA (on CPU
  the same call without compiling, so ``bench/gpu.py --smoke`` runs the same code).

Sampling (the empty-draft retry) always goes through ``generate``: it is rare and needs its
processors. Mixed-adapter batches pass ``adapter_names`` to peft on every path.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Iterator
from typing import Any

from kernel.errors import ModelError

DECODE_MODES = ("hf", "greedy", "int8", "static")


class Decoder:
    """Generates the new tokens of a left-padded batch with the chosen path."""

    def __init__(self, mode: str = "hf", setting: str = "RADFLOW_DECODE") -> None:
        if mode not in DECODE_MODES:
            raise ModelError(f"{setting}={mode!r} is not one of {', '.join(DECODE_MODES)}")
        self.mode = mode
        # id(float linear) -> (weak reference to it, its int8 copy); frozen weights never change
        self._int8: dict[int, tuple[weakref.ref[Any], Any]] = {}

    def generate(self, model: Any, enc: Any, *, max_new_tokens: int, eos_token_id: int | list[int],
                 pad_token_id: int,
                 adapter_names: list[str] | None = None, do_sample: bool = False, **sampling: Any) -> Any:
        """(batch, new) token ids after the prompt; finished rows are padded with ``pad_token_id``."""
        ids, mask = enc["input_ids"], enc["attention_mask"]
        extra: dict[str, Any] = {"adapter_names": adapter_names} if adapter_names is not None else {}
        if do_sample or self.mode in ("hf", "static"):
            if self.mode == "static" and not do_sample:
                extra.update(cache_implementation="static", disable_compile=not ids.is_cuda)
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 eos_token_id=eos_token_id, pad_token_id=pad_token_id, do_sample=do_sample,
                                 **sampling, **extra)
            return out[:, ids.shape[1]:]
        if self.mode == "int8" and ids.device.type != "cpu":
            raise ModelError("RADFLOW_DECODE=int8 is a CPU path; use static or hf on CUDA")
        swap = self._int8_linears(model) if self.mode == "int8" else contextlib.nullcontext()
        with swap:
            return greedy(model, ids, mask, max_new_tokens, eos_token_id, pad_token_id, **extra)

    # -- int8 ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _int8_linears(self, model: Any) -> Iterator[None]:
        """Swap every frozen ``nn.Linear`` (LoRA's own small A/B matrices excepted) for its int8
        copy for the duration of the call, and put the float layers back afterwards."""
        import torch

        swapped: list[tuple[Any, str, Any]] = []
        try:
            for parent_name, parent in list(model.named_modules()):
                if ".lora_" in f".{parent_name}":
                    continue
                for name, child in list(parent._modules.items()):
                    if type(child) is torch.nn.Linear and not name.startswith("lora_"):
                        setattr(parent, name, self._int8_copy(child))
                        swapped.append((parent, name, child))
            yield
        finally:
            for parent, name, child in reversed(swapped):
                setattr(parent, name, child)

    def _int8_copy(self, linear: Any) -> Any:
        cached = self._int8.get(id(linear))
        if cached is not None and cached[0]() is linear:
            return cached[1]
        qlinear = int8_linear(linear)
        self._int8[id(linear)] = (weakref.ref(linear), qlinear)
        return qlinear


def int8_linear(linear: Any) -> Any:
    """A dynamic int8 copy of a float ``nn.Linear``: int8 weights with one scale per output row,
    activations quantized per call to 8 bits (not 7: ``reduce_range`` only matters on CPUs without
    AVX-512 VNNI, where the int16 accumulation may saturate)."""
    import warnings

    import torch

    weight = linear.weight.detach().float()
    scales = weight.abs().amax(dim=1).clamp(min=1e-8) / 127.0
    with warnings.catch_warnings():
        # torch 2.13 deprecates quantized tensors in favour of torchao (pytorch/pytorch#184982), which
        # is not a dependency; the fbgemm/onednn kernels below are what makes int8 pay on CPU.
        warnings.simplefilter("ignore", UserWarning)
        qweight = torch.quantize_per_channel(weight, scales.double(), torch.zeros_like(scales, dtype=torch.long),
                                             axis=0, dtype=torch.qint8)
        bias = linear.bias.detach().float() if linear.bias is not None else None
        packed = torch.ops.quantized.linear_prepack(qweight, bias)
    return _int8_module_class()(packed, linear.in_features, linear.out_features)


@functools.cache
def _int8_module_class() -> Any:
    import torch

    class Int8Linear(torch.nn.Module):
        """Stands in for an ``nn.Linear`` during an ``int8`` call (torch is imported lazily in model/)."""

        def __init__(self, packed: Any, in_features: int, out_features: int) -> None:
            super().__init__()
            self.packed, self.in_features, self.out_features = packed, in_features, out_features

        def forward(self, x: Any) -> Any:  # (..., in) float32 -> (..., out)
            return torch.ops.quantized.linear_dynamic(x, self.packed, False)

    return Int8Linear


def greedy(model: Any, ids: Any, mask: Any, max_new_tokens: int, eos_token_id: int | list[int],
           pad_token_id: int, **extra: Any) -> Any:
    """Greedy decoding on a left-padded batch, the loop ``generate`` runs without its machinery.

    ids, mask: (batch, prompt). Returns (batch, steps), steps <= max_new_tokens: the loop stops
    when every row has produced one of ``eos_token_id`` (an id or a list, as ``generate`` takes).
    """
    import torch
    from transformers import DynamicCache

    cache = DynamicCache()
    stops = torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else eos_token_id, device=ids.device)
    # Left padding: a row's first real token sits at position 0, as generate computes it.
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # (batch, prompt)
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    produced = []
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                   use_cache=True, logits_to_keep=1, **extra).logits  # (batch, 1, vocab)
    for step in range(max_new_tokens):
        token = logits[:, -1].argmax(dim=-1)  # (batch,)
        token = torch.where(done, torch.full_like(token, pad_token_id), token)
        produced.append(token)
        done |= torch.isin(token, stops)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        positions = positions[:, -1:] + 1  # (batch, 1)
        logits = model(input_ids=token[:, None], attention_mask=mask, position_ids=positions,
                       past_key_values=cache, use_cache=True, logits_to_keep=1, **extra).logits
    return torch.stack(produced, dim=1)
