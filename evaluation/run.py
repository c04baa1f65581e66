"""``radflow eval``: the paper's evaluation tables for several systems side by side, in one run.

Reports are split 80/10/10 by the same accession hash as the refits. What needs choosing (the
prompt template of each adapter) is chosen on the validation split; the test split is drafted
once per system and only scored. Systems:

- ``last-sentence``: the findings' last sentence (a trivial baseline);
- ``retrieval``: the impression of the most similar train report of the same institution (BM25);
- ``consensus``: among the k most similar train reports of the institution, the impression that
  agrees most with the others (mean R-L; model/consensus.py), k chosen per institution on
  validation (``consensus_k`` fixes it, as RADFLOW_CONSENSUS_K serves it); ``ranker``: a LightGBM
  lambdarank model trained on the train split picks among them (evaluation/consensus.py;
  neither uses the base model);
- ``base``: the base model with its own prompt (a checkpoint, or one bootstrapped on the train split);
- ``fewshot``: day 0, an instruct base with the k most similar train reports of the same
  institution as worked examples in a chat prompt (model/fewshot.py);
- ``shared-adapter``: one LoRA adapter refit on every institution's train split;
- ``institution-adapters``: an adapter per institution with enough reports (others: the shared one);
- ``adapters-retrieval``: the institution adapters, with the most similar train reports put
  before the prompt (as ``RADFLOW_RETRIEVAL_K`` serves them);
- ``retrieval-rerank``: the untrained base picks, among the k most similar train reports of the
  institution, the impression it finds most likely given the findings (k and the score chosen on
  the validation split; evaluation/rerank.py); ``fewshot-rerank``: the same, the 5 most
  similar cases as worked examples in its prompt;
- ``rerank``: the reranker as ``radflow serve`` serves it (model/systems.py): k, the summed
  log-probability and the worked examples fixed (``rerank_k``, ``rerank_shots``), nothing chosen.

Each system's test drafts are saved under ``<out>/drafts/`` with what produced them, and each
adapter under ``<out>/adapters/``: the same command run again (with more systems, or after a
kill) reuses them instead of drafting or training again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from evaluation.drafting import DraftCache, EvalDrafter, model_id
from evaluation.inputs import drafting_order, subsample, write_pairs
from evaluation.tables import EvalResult
from kernel.errors import TrainingError
from model import fewshot
from model.acquire.bootstrap import BootstrapConfig, bootstrap
from model.adapters import BASE, SHARED, AdapterSpec
from model.drafter import DraftRequest, EchoDrafter, ModelDrafter
from model.loader import load_model
from model.retrieval import CaseIndex, RetrievalDrafter
from training import dataset as ds
from training.gate import score_drafts
from training.recipe import Recipe

log = logging.getLogger(__name__)

SYSTEMS = ("last-sentence", "retrieval", "consensus", "ranker", "base", "fewshot", "shared-adapter",
           "institution-adapters", "adapters-retrieval", "retrieval-rerank", "fewshot-rerank", "rerank")
MODEL_SYSTEMS = SYSTEMS[4:]


def run_eval(examples: list[ds.Example], out_dir: Path, recipe: Recipe, *, model_path: Path | None = None,
             bootstrap_config: BootstrapConfig | None = None, systems: Sequence[str] = SYSTEMS,
             progress: bool = True, device: str | None = None, batch: int = 16, fewshot_k: int = 3,
             cases_k: int = 1, train_per_institution: int | None = None,
             max_input_tokens: int = 448, partial: bool = False, consensus_k: int | None = None,
             rerank_k: int = 2, rerank_shots: int = 5, as_ingested: bool = False, split_salt: str = "",
             own_split: bool = False) -> EvalResult:
    """The systems side by side on the test split. ``partial``: train and draft nothing, score
    what earlier (killed) runs of the same command saved, on the test reports every system has.
    ``as_ingested``: the texts cleaned as ingest stores them (what `radflow serve` drafts and scores).
    ``split_salt`` moves the hash split; ``own_split``: each report's own split (--split-field).
    ``consensus_k``: one k for every institution (None: chosen per institution on validation)."""
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        raise TrainingError(f"--systems: unknown {unknown}; known: {', '.join(SYSTEMS)}")
    bootstrap_config = bootstrap_config or BootstrapConfig()
    out_dir.mkdir(parents=True, exist_ok=True)
    data = ds.build(examples, split_salt, own_split)
    if as_ingested:  # split and deduplicated as read (as `radflow import` and `replay` do), then cleaned
        from evaluation.inputs import as_ingested as clean

        data = ds.Dataset(clean(data.train), clean(data.val), clean(data.test), data.duplicates)
    if not data.test:
        raise TrainingError("the test split is empty: too few reports")
    log.info("evaluation data: %s (%d duplicates dropped)", data.counts(), data.duplicates)
    notes: dict[str, str] = {}
    texts: dict[str, list[str]] = {}
    test = drafting_order(data.test, batch, recipe.seed)
    index = _draft_baselines(systems, data, test, texts, notes, consensus_k)
    model_systems = [s for s in systems if s in MODEL_SYSTEMS]
    if model_systems and partial:
        if model_path is None:
            raise TrainingError("--partial needs --model (the checkpoint the killed run used)")
        cache = DraftCache(out_dir / "drafts", test, model_id(model_path), recipe, max_input_tokens)
        for system in model_systems:
            texts[system], notes[system] = cache.saved(system)
    elif model_systems:
        if model_path is None:
            pairs = out_dir / "train_pairs.jsonl"
            write_pairs(data.train, pairs)
            model_path = bootstrap(pairs, out_dir / "model", bootstrap_config, progress=progress)
            notes["base"] = f"bootstrapped on the train split ({bootstrap_config.steps} steps)"
        else:
            notes["base"] = f"checkpoint {model_path.name}"
        loaded = load_model(model_path, device)
        drafter = ModelDrafter(loaded, recipe.max_new_tokens, max_input_tokens, retrieval=index)
        for system in ("fewshot", "fewshot-rerank"):
            if system in systems and not fewshot.has_chat_template(loaded.tokenizer):
                raise TrainingError(f"--systems {system} needs an instruct base with a chat template; {model_path} has none")
        cache = DraftCache(out_dir / "drafts", test, loaded.model_id, recipe, max_input_tokens)
        run = EvalDrafter(drafter, cache, test, model_path, recipe, out_dir, device, batch, progress, notes)
        _draft_model_systems(systems, run, _adapter_data(data, train_per_institution, recipe.seed), texts,
                             fewshot_k, cases_k, train_per_institution)
        if "rerank" in systems:
            from model.systems import rerank_drafter

            assert drafter.retrieval is not None  # the train split's case index
            served = rerank_drafter(loaded, drafter.retrieval, rerank_k, rerank_shots, max_input_tokens)
            texts["rerank"] = run.draft("rerank", BASE, f"the served reranker: k={rerank_k}, summed log-probability, "
                                        f"{rerank_shots} worked examples", using=served,
                                        extra={"k": rerank_k, "shots": rerank_shots})
    return _scored(test, texts, notes)


def _draft_baselines(systems: Sequence[str], data: ds.Dataset, test: list[ds.Example],
                     texts: dict[str, list[str]], notes: dict[str, str], consensus_k: int | None = None) -> CaseIndex:
    """The systems that need no model; returns the train split's case index, which the
    drafter also uses to put similar cases before a prompt."""
    train = data.train
    requests = [DraftRequest(e.institution, e.accession, e.findings, e.language) for e in test]
    if "last-sentence" in systems:
        texts["last-sentence"] = [d.text for d in EchoDrafter().draft(requests)]
        notes["last-sentence"] = "the findings' last sentence"
    index = CaseIndex()  # what a site has signed before the test reports: the train split
    for e in train:
        index.add(e.institution, e.accession, e.findings, e.impression)
    if "retrieval" in systems:
        texts["retrieval"] = [d.text for d in RetrievalDrafter(index).draft(requests)]
        notes["retrieval"] = f"BM25 top-1 over {len(train)} train reports, per institution"
    if "consensus" in systems and consensus_k is not None:  # one k, as `radflow serve` serves it
        from model.consensus import ConsensusDrafter

        texts["consensus"] = [d.text for d in ConsensusDrafter(index, default_k=consensus_k).draft(requests)]
        notes["consensus"] = f"the most agreed impression among the BM25 top-{consensus_k} train reports, per institution"
    if ("consensus" in systems and consensus_k is None) or "ranker" in systems:
        from evaluation import consensus as consensus_eval

        if not data.val:
            raise TrainingError("consensus and ranker choose their settings on the validation split, which is empty")
        if "consensus" in systems and consensus_k is None:
            texts["consensus"], notes["consensus"] = consensus_eval.consensus_drafts(index, data.val, test)
        if "ranker" in systems:
            texts["ranker"], notes["ranker"] = consensus_eval.ranker_drafts(train, data.val, test, index)
    return index


def _adapter_data(data: ds.Dataset, train_per_institution: int | None, seed: int) -> ds.Dataset:
    """The splits the adapters train on: the train split subsampled per institution when asked."""
    if not train_per_institution:
        return data
    trained = ds.Dataset(subsample(data.train, train_per_institution, seed), data.val, data.test)
    log.info("adapters train on %d of %d train reports (at most %d per institution)",
             len(trained.train), len(data.train), train_per_institution)
    return trained


def _draft_model_systems(systems: Sequence[str], run: EvalDrafter, trained: ds.Dataset, texts: dict[str, list[str]],
                         fewshot_k: int, cases_k: int, train_per_institution: int | None) -> None:
    """The systems that draft with the base model, in order: base, few-shot, then the adapters
    (each refit once and reused by the systems after it)."""
    if "base" in systems:
        texts["base"] = run.draft("base", BASE, run.notes["base"])
    for system in ("retrieval-rerank", "fewshot-rerank"):  # choices on the validation split only
        if system in systems:
            from evaluation import rerank as rerank_eval

            assert run.drafter.retrieval is not None  # the train split's case index
            reranker, choice = rerank_eval.prepare(
                run.drafter.loaded, run.drafter.retrieval, trained.val, run.out_dir,
                max_input_tokens=run.drafter.max_input_tokens, progress=run.progress,
                shots=rerank_eval.SHOTS if system == "fewshot-rerank" else 0)
            texts[system] = run.draft(system, BASE, choice.note(len(trained.val)), using=reranker, extra=choice.key())
    if "fewshot" in systems:
        texts["fewshot"] = run.draft("fewshot", BASE, (
            f"{fewshot.system_label(fewshot_k)}: the untrained base, chat template, the {fewshot_k} most "
            f"similar train reports of the institution as worked examples"), fewshot_k=fewshot_k)
    sample = f"; trained on at most {train_per_institution} reports per institution" if train_per_institution else ""
    adapters: dict[str, AdapterSpec] = {}
    if any(s in systems for s in ("shared-adapter", "institution-adapters", "adapters-retrieval")):
        adapters[SHARED], shared_note = run.refit(trained, None)
    if "shared-adapter" in systems:
        run.drafter.set_adapters(adapters)
        texts["shared-adapter"] = run.draft("shared-adapter", SHARED, shared_note + sample)
    own_notes = []
    if "institution-adapters" in systems:
        for institution in ds.institutions_with(trained.train, run.recipe.min_examples):
            adapters[institution], note = run.refit(trained, institution)
            own_notes.append(note)
        run.drafter.set_adapters(adapters)
        texts["institution-adapters"] = run.draft("institution-adapters", None,  # routed
                                                  ("; ".join(own_notes) or "none had enough data") + sample)
    if "adapters-retrieval" in systems:
        run.drafter.set_adapters(adapters)
        which = "the institution adapters (shared for the others)" if own_notes else "the shared adapter"
        if not own_notes:
            which += f" ({shared_note})"
        texts["adapters-retrieval"] = run.draft("adapters-retrieval", None, (
            f"{which}, the {cases_k} most similar train report(s) of the institution before the prompt" + sample),
            cases_k=cases_k)


def _scored(test: list[ds.Example], texts: dict[str, list[str]], notes: dict[str, str]) -> EvalResult:
    """Every system scored on the test reports all of them have drafted (all, unless partial)."""
    order = [s for s in SYSTEMS if s in texts]
    n = min(len(texts[s]) for s in order)
    if n == 0:
        raise TrainingError("no system has drafts for any test report yet")
    if n < len(test):
        log.warning("partial: %d of %d test reports drafted by every system; scoring those", n, len(test))
    return EvalResult(test[:n], {s: score_drafts(test[:n], texts[s][:n]) for s in order}, notes, len(test))
