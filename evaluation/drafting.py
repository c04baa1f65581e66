"""Drafting the test split with the base model for ``radflow eval``: the drafts saved per system
so a rerun or a killed run continues, and the adapters refit on the train split."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from kernel.errors import TrainingError
from model.adapters import ADAPTER_META, SHARED, AdapterSpec, read_spec
from model.drafter import Drafter, ModelDrafter
from training import dataset as ds
from training.lora import train_adapter
from training.recipe import Recipe
from training.refit import draft_texts, select_template

log = logging.getLogger(__name__)


@dataclass
class EvalDrafter:
    """The model systems' drafter on the test split (in drafting order), the drafts saved so far,
    and what each system's note says about how it was made."""

    drafter: ModelDrafter
    cache: DraftCache
    test: list[ds.Example]
    model_path: Path
    recipe: Recipe
    out_dir: Path
    device: str | None
    batch: int
    progress: bool
    notes: dict[str, str]

    def draft(self, system: str, use: str | None, note: str, fewshot_k: int = 0, cases_k: int = 0,
              using: Drafter | None = None, extra: dict | None = None) -> list[str]:
        """``system``'s drafts of the whole test split with adapter ``use`` (None: routed by
        institution), continuing from what is saved for the same settings and adapters.
        ``using``: another drafter on the same model (the reranker), ``extra`` its settings."""
        serving = sorted(spec.label for spec in self.drafter.serving.values())
        key = {"fewshot_k": fewshot_k, "cases_k": cases_k, "adapters": serving} | (extra or {})
        out = self.cache.get(system, key)
        self.drafter.fewshot_k, self.drafter.retrieval_k = fewshot_k, cases_k
        for start in range(len(out), len(self.test), self.batch):  # resumes where a killed run stopped
            out += draft_texts(using or self.drafter, self.test[start : start + self.batch], use, self.batch, False, system)
            self.cache.put(system, key, out, note)
            if self.progress:
                log.info("%s: %d of %d test reports drafted", system, len(out), len(self.test))
        self.drafter.fewshot_k = self.drafter.retrieval_k = 0
        self.notes[system] = note
        return out

    def refit(self, data: ds.Dataset, institution: str | None) -> tuple[AdapterSpec, str]:
        """The adapter of ``institution`` (None: the shared one), and its note."""
        return refit(self.model_path, data, institution, self.recipe, self.out_dir, self.drafter, self.device,
                     self.progress)


def model_id(path: Path) -> str:
    """The checkpoint's name and, for a bootstrapped one, its cache key: what the saved drafts were made by."""
    from model.acquire.bootstrap import META_FILE

    meta_path = Path(path) / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return f"{Path(path).name}@{meta.get('cache_key', 'external')}"


class DraftCache:
    """Test drafts per system, saved after every batch with what produced them, so a rerun (or
    a killed run started again) continues instead of drafting again."""

    def __init__(self, folder: Path, test: list[ds.Example], model_id: str, recipe: Recipe,
                 max_input_tokens: int) -> None:
        self.folder = folder
        digest = hashlib.sha256("\n".join(f"{e.institution}|{e.accession}" for e in test).encode()).hexdigest()
        self.identity = {"test": digest[:16], "model": model_id, "recipe": repr(recipe),
                         "max_input_tokens": max_input_tokens}

    def _path(self, system: str) -> Path:
        return self.folder / f"{system}.json"

    def get(self, system: str, key: dict) -> list[str]:
        path = self._path(system)
        if not path.is_file():
            return []
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("identity") != self.identity | key:
            return []
        log.info("%d drafts of %s reused from %s", len(saved["texts"]), system, path)
        return list(saved["texts"])

    def saved(self, system: str) -> tuple[list[str], str]:
        """Whatever was saved for ``system`` on this test split and model, and its note."""
        path = self._path(system)
        saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        if {k: saved.get("identity", {}).get(k) for k in self.identity} != self.identity:
            raise TrainingError(f"--partial: no drafts of {system} for this data, model and recipe in {self.folder}")
        return list(saved["texts"]), saved.get("note", "")

    def put(self, system: str, key: dict, texts: list[str], note: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self._path(system).with_suffix(".tmp")
        tmp.write_text(json.dumps({"identity": self.identity | key, "texts": texts, "note": note},
                                  ensure_ascii=False), encoding="utf-8")
        tmp.replace(self._path(system))


def _finished(path: Path, recipe: Recipe, examples: int) -> AdapterSpec | None:
    """An adapter a previous run of the same command trained (same recipe, same data size)."""
    meta_path = path / ADAPTER_META
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("recipe") != repr(recipe) or meta.get("examples") != examples:
        return None
    return read_spec(path)


def refit(model_path: Path, data: ds.Dataset, institution: str | None, recipe: Recipe, out_dir: Path,
          drafter: ModelDrafter, device: str | None, progress: bool) -> tuple[AdapterSpec, str]:
    """An adapter on the train split, its template chosen on the validation split; and how."""
    name = institution or SHARED
    sub = data.only(institution)
    done = _finished(out_dir / "adapters" / name / "final", recipe, len(sub.train))
    if done is not None:
        meta = json.loads((done.path / ADAPTER_META).read_text())
        log.info("adapter %s reused from %s", name, done.path)
        return done, (f"{name}: {len(sub.train)} train reports, {meta.get('steps')} steps, template "
                      f"{done.template_family} (reused)")
    family, selection = select_template(model_path, name, sub, recipe, out_dir / "adapters" / name / "select",
                                        drafter, device, progress)
    result = train_adapter(model_path, sub.train, recipe, family, out_dir / "adapters" / name / "final", name, "eval",
                           out_dir / "adapters" / name / "work", fingerprint=sub.fingerprint(), device=device,
                           progress=progress)
    chosen = ", ".join(f"{f}: {v:.3f}" for f, v in selection.items())
    note = f"{name}: {len(sub.train)} train reports, {result.steps} steps, template {family}"
    return result.adapter, note + (f" (validation R-L {chosen})" if chosen else "")
