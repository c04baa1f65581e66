"""One refit of one adapter: data from storage, template selection, training, evaluation against
the serving champion on the held-out split, the gate's decision, and the promotion event.

The champion is drafted as it serves today: with no adapter yet, that is the base, few-shot with
similar cases when it is an instruct model (day 0); adapters get cases before their prompt when
``retrieval_k`` is set. The cases come from the train split only, so no held-out report is
retrieved for itself.

Everything is recorded in storage (runs, per-segment metrics, adapter versions); a run that was
killed is found there as "running" and resumes from its checkpoint on the next call.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kernel.codes import AdapterChange, AdapterStatus
from model import fewshot
from model.adapters import BASE, SHARED, AdapterSpec, next_version, route, serving_specs
from model.drafter import Drafter, DraftRequest, ModelDrafter
from model.loader import load_model
from model.retrieval import CaseIndex
from storage.repository import Repository
from storage.tables import AdapterEvalRow, AdapterRow, TrainingRunRow
from training import dataset as ds
from training.gate import Decision, ReportScore, decide, means, score_drafts
from training.lora import train_adapter
from training.recipe import Recipe

log = logging.getLogger(__name__)

Publish = Callable[[dict], None]


@dataclass(frozen=True)
class Outcome:
    name: str
    run_id: int
    decision: str  # promoted, rejected, skipped
    reason: str
    version: str = ""


class Refitter:
    def __init__(self, repository: Repository, model_path: Path, adapter_dir: Path, recipe: Recipe,
                 publish: Publish | None = None, progress: bool = True, device: str | None = None,
                 fewshot_k: int = 0, retrieval_k: int = 0) -> None:
        self.repository = repository
        self.model_path = Path(model_path)
        self.adapter_dir = Path(adapter_dir)
        self.recipe = recipe
        self.publish = publish
        self.progress = progress
        self.device = device
        self.fewshot_k = fewshot_k
        self.retrieval_k = retrieval_k
        self._drafter: ModelDrafter | None = None

    # -- data ---------------------------------------------------------------------------------
    def dataset(self, window_end: float) -> ds.Dataset:
        since = window_end - self.recipe.window_days * 86400
        return ds.from_rows(self.repository.signed_pairs(since=since, until=window_end))

    def targets(self, data: ds.Dataset) -> list[str]:
        """The shared adapter, and one per institution with enough signed reports."""
        return [SHARED] + ds.institutions_with(data.train, self.recipe.min_examples)

    def refit_all(self, trigger: str = "manual") -> list[Outcome]:
        data = self.dataset(time.time())
        return [self.refit(name, trigger) for name in self.targets(data)]

    # -- one refit -------------------------------------------------------------------------------
    def refit(self, name: str, trigger: str = "manual") -> Outcome:
        repo = self.repository
        run = repo.unfinished_run(name)
        if run is not None:
            log.info("refit of %s resumes run %s", name, run.id)
        else:
            now = time.time()
            run = repo.save(TrainingRunRow(name=name, trigger=trigger, window_end=now,
                                           window_start=now - self.recipe.window_days * 86400))
        assert run.id is not None
        data = self.dataset(run.window_end)
        self._use_cases(data)
        sub = data if name == SHARED else data.only(name)
        needed = self.recipe.min_examples if name != SHARED else 1
        if len(sub.train) < needed or not sub.test:
            reason = f"{len(sub.train)} train / {len(sub.test)} test reports; needs {needed} / 1"
            return self._finish(run, "skipped", reason)
        fingerprint = sub.fingerprint()
        if run.data_fingerprint and run.data_fingerprint != fingerprint:
            log.warning("the data of run %s changed since it started (reports deleted?); its checkpoint is not reused", run.id)
        run.data_fingerprint, run.train_examples, run.test_examples = fingerprint, len(sub.train), len(sub.test)
        run.version = run.version or next_version(self.adapter_dir, name)
        run = repo.save(run)
        work = self.adapter_dir / name / "runs" / str(run.id)
        try:
            if not run.template_family:
                family, selection = self.select_template(name, sub, work)
                run.template_family, run.selection = family, json.dumps(selection)
                run = repo.save(run)
            result = train_adapter(self.model_path, sub.train, self.recipe, run.template_family,
                                   self.adapter_dir / name / run.version, name, run.version, work / "train",
                                   fingerprint=fingerprint, device=self.device, progress=self.progress)
        except Exception as exc:
            run.state, run.reason, run.finished_at = "failed", f"{type(exc).__name__}: {exc}", time.time()
            repo.save(run)
            raise
        run.steps, run.resumed_from = result.steps, result.resumed_from
        run.train_tokens_per_s = result.train_tokens / max(result.seconds, 1e-9)
        if not any(r.version == run.version for r in repo.adapters(name)):  # a resumed run may have it
            repo.save(AdapterRow(name=name, version=run.version, path=str(result.adapter.path),
                                 template_family=run.template_family, run_id=run.id,
                                 base_model_id=self._eval_drafter().loaded.model_id))
        decision = self.compare(run, sub.test, result.adapter, self.champion_for(name))
        run.delta_rougeL, run.p_value, run.metrics = decision.delta, decision.p_value, json.dumps(decision.to_dict())
        if decision.promote:
            self.promote(name, run.version)
            return self._finish(run, "promoted", decision.reason)
        self._set_status(name, run.version, AdapterStatus.REJECTED)
        return self._finish(run, "rejected", decision.reason)

    def select_template(self, name: str, sub: ds.Dataset, work: Path) -> tuple[str, dict[str, float]]:
        return select_template(self.model_path, name, sub, self.recipe, work / "select", self._eval_drafter(),
                               self.device, self.progress)

    def compare(self, run: TrainingRunRow, test: list[ds.Example], challenger: AdapterSpec,
                champion: AdapterSpec | None) -> Decision:
        slots = {"challenger": challenger} | ({"champion": champion} if champion else {})
        ch = self._score(test, slots, "challenger")
        cp = self._score(test, slots, "champion" if champion else BASE)
        decision = decide(test, ch, cp, self.recipe)
        assert run.id is not None
        for role, spec in (("challenger", challenger), ("champion", champion)):
            for seg in decision.segments:
                m = seg.challenger if role == "challenger" else seg.champion
                self.repository.add(AdapterEvalRow(
                    run_id=run.id, role=role, adapter=self.system_label(spec), institution=seg.institution,
                    body_system=seg.body_system, n=seg.n, rouge1=m["rouge1"], rouge2=m["rouge2"],
                    rougeL=m["rougeL"], missed_rate=m["missed_rate"], over_rate=m["over_rate"]))
        return decision

    def system_label(self, spec: AdapterSpec | None) -> str:
        """The serving system as drafts record it: the adapter (+cases), or the base (few-shot)."""
        drafter = self._eval_drafter()
        if spec is None:
            return fewshot.system_label(self.fewshot_k) if drafter.fewshot_active() else ""
        return spec.label + (f"+cases-k{self.retrieval_k}" if self.retrieval_k else "")

    def _use_cases(self, data: ds.Dataset) -> None:
        """Similar cases for the prompts, from the train split of every institution."""
        if not (self.fewshot_k or self.retrieval_k):
            return
        index = CaseIndex()
        for e in data.train:
            index.add(e.institution, e.accession, e.findings, e.impression)
        drafter = self._eval_drafter()
        drafter.retrieval, drafter.fewshot_k, drafter.retrieval_k = index, self.fewshot_k, self.retrieval_k

    def champion_for(self, name: str) -> AdapterSpec | None:
        """What serves this adapter's reports today: its own champion, else the shared one, else the base."""
        return route(name, serving_specs(self.repository.champions()))

    # -- the alias -----------------------------------------------------------------------------------
    def promote(self, name: str, version: str) -> None:
        self.repository.promote(name, version)
        self._announce(AdapterChange.PROMOTED, name, version)

    def rollback(self, name: str) -> str:
        row = self.repository.rollback(name)
        self._announce(AdapterChange.ROLLED_BACK, name, row.version)
        return row.version

    def _announce(self, event: AdapterChange, name: str, version: str) -> None:
        log.info("adapter %s/%s %s", name, version, event)
        if self.publish is not None:
            self.publish({"event": event.value, "name": name, "version": version, "at": time.time()})

    # -- helpers --------------------------------------------------------------------------------------
    def _set_status(self, name: str, version: str, status: str) -> None:
        row = next(r for r in self.repository.adapters(name) if r.version == version)
        row.status = status
        self.repository.save(row)

    def _finish(self, run: TrainingRunRow, decision: str, reason: str) -> Outcome:
        run.state = "skipped" if decision == "skipped" else "done"
        run.decision, run.reason, run.finished_at = decision, reason, time.time()
        run = self.repository.save(run)
        log.info("refit of %s: %s (%s)", run.name, decision, reason)
        assert run.id is not None
        return Outcome(run.name, run.id, decision, reason, run.version)

    def _eval_drafter(self) -> ModelDrafter:
        if self._drafter is None:
            self._drafter = ModelDrafter(load_model(self.model_path, self.device), self.recipe.max_new_tokens)
        return self._drafter

    def _score(self, examples: list[ds.Example], slots: dict[str, AdapterSpec], use: str) -> list[ReportScore]:
        return score_with(self._eval_drafter(), examples, slots, use)


def draft_texts(drafter: Drafter, examples: list[ds.Example], use: str | None, batch: int = 16,
                progress: bool = False, what: str = "") -> list[str]:
    """Drafts of ``examples`` with the adapter in slot ``use``, BASE, or routed by institution (None)."""
    from tqdm.auto import tqdm

    out: list[str] = []
    for i in tqdm(range(0, len(examples), batch), desc=f"drafting ({what})", disable=not progress, unit="batch"):
        out += [d.text for d in drafter.draft([DraftRequest(e.institution, e.accession, e.findings, e.language, use)
                                               for e in examples[i : i + batch]])]
    return out


def score_with(drafter: ModelDrafter, examples: list[ds.Example], slots: dict[str, AdapterSpec],
               use: str) -> list[ReportScore]:
    """Draft ``examples`` with the adapter in slot ``use`` (or BASE) and score them."""
    drafter.set_adapters(slots)
    return score_drafts(examples, draft_texts(drafter, examples, use))


def select_template(model_path: Path, name: str, sub: ds.Dataset, recipe: Recipe, work: Path,
                    drafter: ModelDrafter, device: str | None, progress: bool) -> tuple[str, dict[str, float]]:
    """The paper's selection: a short run per template, the best validation ROUGE-L wins (ties:
    the lower number). Only the validation split is drafted."""
    families = list(recipe.templates)
    if len(families) == 1 or not sub.val:
        return families[0], {}
    val = sub.val[: recipe.selection_examples]
    results: dict[str, float] = {}
    for family in families:
        trial = train_adapter(model_path, sub.train, recipe, family, work / family, name, f"select-{family}",
                              work / f"{family}.work", max_steps=recipe.selection_steps, device=device,
                              progress=progress)
        results[family] = means(score_with(drafter, val, {"trial": trial.adapter}, "trial"))["rougeL"]
        log.info("template %s of %s: validation ROUGE-L %.4f", family, name, results[family])
    drafter.set_adapters({})
    return max(families, key=lambda f: (results[f], -int(f))), results
