"""The refit recipe: a small YAML, the paper's settings by default (ChatRadio-Valuer: LoRA r=64,
alpha=16, lr 1.41e-5 decaying, 3 epochs, effective batch 64, max length 512)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel.errors import TrainingError

RECIPES = Path(__file__).with_name("recipes")


@dataclass(frozen=True)
class Recipe:
    # LoRA
    r: int = 64
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    # schedule
    lr: float = 1.41e-5
    epochs: int = 3
    effective_batch: int = 64
    micro_batch: int = 4
    max_length: int = 512
    warmup_ratio: float = 0.03
    packing: bool = True
    gradient_checkpointing: bool = True  # on CUDA only: it costs time and saves what 7B needs
    cpu_bf16: bool = False  # bf16 autocast in CPU training: 1.69x forward+backward in bench/cpu_model.py, off (bench/README.md)
    checkpoint_every: int = 50  # optimizer steps between resumable checkpoints
    seed: int = 42
    # template selection: a short run per template, the best ROUGE-L on validation wins
    templates: tuple[str, ...] = ("1", "2", "3", "4", "5")
    selection_steps: int = 30
    selection_examples: int = 64
    # data
    min_examples: int = 50  # an institution with fewer train examples gets no adapter of its own
    window_days: float = 365.0
    # promotion gate
    alpha_level: float = 0.05  # paired approximate randomisation on per-report ROUGE-L
    permutations: int = 2000
    margin: float = 0.02  # a segment may not lose more ROUGE-L than this...
    min_segment: int = 20  # ...when it has at least this many test reports
    missed_margin: float = 0.05  # nor may the missed-diagnosis rate rise by more than this
    max_new_tokens: int = 96

    def __post_init__(self) -> None:
        for name in ("r", "alpha", "epochs", "effective_batch", "micro_batch", "max_length", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise TrainingError(f"recipe: {name} must be at least 1, got {getattr(self, name)}")
        if self.effective_batch % self.micro_batch:
            raise TrainingError("recipe: effective_batch must be a multiple of micro_batch")
        if not self.templates or any(t not in "12345" or len(t) != 1 for t in self.templates):
            raise TrainingError(f"recipe: templates must be among 1-5, got {list(self.templates)}")
        if not 0 < self.lr < 1:
            raise TrainingError(f"recipe: lr must be in (0, 1), got {self.lr}")

    @property
    def accumulation(self) -> int:
        return self.effective_batch // self.micro_batch

    @classmethod
    def load(cls, path: str | Path | None) -> Recipe:
        """The recipe at ``path`` (a file, or a name under training/recipes/); paper defaults if None."""
        if not path:
            return cls()
        import yaml

        candidate = Path(path)
        if not candidate.is_file():
            candidate = RECIPES / f"{path}.yaml"
        if not candidate.is_file():
            raise TrainingError(f"RADFLOW_TRAIN_RECIPE={path}: no such file or built-in recipe "
                              f"({', '.join(sorted(p.stem for p in RECIPES.glob('*.yaml')))})")
        data: dict[str, Any] = yaml.safe_load(candidate.read_text()) or {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainingError(f"recipe {candidate}: unknown keys {unknown}")
        for key in ("target_modules", "templates"):
            if key in data:
                data[key] = tuple(str(v) for v in data[key])
        return cls(**data)

    def replace(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **changes)


