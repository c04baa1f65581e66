"""``radflow eval``: the paper's evaluation tables for several systems side by side, in one run.

Reports are split 80/10/10 by the same accession hash as the refits. What needs choosing (the
prompt template of each adapter) is chosen on the validation split; the test split is drafted
once per system and only scored. Systems:

- ``last-sentence``: the findings' last sentence (a trivial baseline);
- ``retrieval``: the impression of the most similar train report of the same institution (BM25);
- ``base``: the base model with its own prompt (a checkpoint, or one bootstrapped on the train split);
- ``fewshot``: day 0, an instruct base with the k most similar train reports of the same
  institution as worked examples in a chat prompt (model/fewshot.py);
- ``shared-adapter``: one LoRA adapter refit on every institution's train split;
- ``institution-adapters``: an adapter per institution with enough reports (others: the shared one);
- ``adapters-retrieval``: the institution adapters, with the most similar train reports put
  before the prompt (as ``RADFLOW_RETRIEVAL_K`` serves them);
- ``retrieval-rerank``: the untrained base picks, among the k most similar train reports of the
  institution, the impression it finds most likely given the findings (k and the score chosen on
  the validation split; training/rerank_eval.py); ``fewshot-rerank``: the same, the 5 most
  similar cases as worked examples in its prompt.

Each system's test drafts are saved under ``<out>/drafts/`` with what produced them, and each
adapter under ``<out>/adapters/``: the same command run again (with more systems, or after a
kill) reuses them instead of drafting or training again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from model import fewshot
from model.adapters import ADAPTER_META, BASE, SHARED, AdapterSpec, read_spec
from model.bootstrap import BootstrapConfig, bootstrap
from model.drafter import Drafter, DraftRequest, EchoDrafter, ModelDrafter
from model.loader import load_model
from model.retrieval import CaseIndex, RetrievalDrafter
from model.scoring.aggregate import METRICS
from radflow.codes import language_of
from radflow.errors import TrainingError
from training import dataset as ds
from training.gate import ReportScore, means, score_drafts
from training.lora import train_adapter
from training.recipe import Recipe
from training.refit import draft_texts, select_template

log = logging.getLogger(__name__)

SYSTEMS = ("last-sentence", "retrieval", "base", "fewshot", "shared-adapter", "institution-adapters",
           "adapters-retrieval", "retrieval-rerank", "fewshot-rerank")
MODEL_SYSTEMS = SYSTEMS[2:]
GROUPS = {"institution": lambda e: e.institution, "body_part": lambda e: e.body_system,
          "body_system": lambda e: e.body_system}
HEADERS = {"rouge1": "R-1", "rouge2": "R-2", "rougeL": "R-L", "missed_rate": "missed", "over_rate": "over"}


@dataclass(frozen=True)
class Fields:
    """Column names of the input (JSONL keys or CSV headers); "a,b" means a, else b."""

    findings: str = "findings"
    impression: str = "impression"
    institution: str = "institution"
    body: str = "body_part,body_system"
    id: str = "id,accession"
    language: str = "language"


def _get(row: dict, names: str) -> str:
    for name in names.split(","):
        value = row.get(name.strip())
        if value not in (None, ""):
            return str(value).strip()
    return ""


def read_reports(paths: Sequence[Path], fields: Fields = Fields(), limit: int | None = None,
                 err: TextIO | None = None) -> list[ds.Example]:
    """Rows of JSONL or CSV files. A file without an institution column is one institution, named
    after the file. Rows missing findings or impression are reported on ``err`` and skipped."""
    out: list[ds.Example] = []
    for path in paths:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise TrainingError(f"cannot read --data {path}: {exc.strerror}") from exc
        if path.suffix.lower() == ".csv":
            rows = list(enumerate(csv.DictReader(io.StringIO(text)), start=2))
        else:
            rows = []
            for n, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        rows.append((n, json.loads(line)))
                    except json.JSONDecodeError as exc:
                        _report(err, f"{path.name}:{n}: not JSON ({exc.msg}); skipped")
        skipped = 0
        taken = 0
        for n, row in rows:
            findings, impression = _get(row, fields.findings), _get(row, fields.impression)
            if not findings or not impression:
                skipped += 1
                _report(err, f"{path.name}:{n}: no {fields.findings if not findings else fields.impression}; skipped")
                continue
            institution = _get(row, fields.institution) or path.stem
            language = _get(row, fields.language) or language_of(findings + impression)
            body = _get(row, fields.body) or "other"
            out.append(ds.Example(institution, _get(row, fields.id) or f"{path.stem}-{n}", body,
                                  "zh" if language.startswith("zh") else "en", findings, impression))
            taken += 1
            if limit and taken >= limit:
                break
        if skipped:
            _report(err, f"{path.name}: {skipped} rows skipped, {taken} read")
    if not out:
        raise TrainingError("no usable rows: every row lacks findings or impression (see --findings-field)")
    return out


def _report(err: TextIO | None, message: str) -> None:
    if err is not None:
        print(message, file=err)


@dataclass
class EvalResult:
    test: list[ds.Example]
    scores: dict[str, list[ReportScore]]  # system -> per test report
    notes: dict[str, str]  # system -> how it was made (template choice, adapters)
    test_size: int = 0  # reports in the test split; more than len(test) when the run is partial

    def table(self, group: str) -> list[dict]:
        """One row per (group value, system) with the mean metrics, plus an "all" row per system."""
        key = GROUPS[group]
        rows = []
        values = sorted({key(e) for e in self.test}) + ["all"]
        for value in values:
            index = [i for i, e in enumerate(self.test) if value == "all" or key(e) == value]
            for system, scores in self.scores.items():
                m = means([scores[i] for i in index])
                rows.append({"group_by": group, "group": value, "system": system, "n": len(index),
                             **{k: m[k] for k in METRICS}})
        return rows


def subsample(train: list[ds.Example], per_institution: int | None, seed: int) -> list[ds.Example]:
    """At most ``per_institution`` train reports of each institution, a seeded random choice in
    the original order; all of them when None. Only adapters train on it (retrieval keeps all)."""
    if not per_institution:
        return train
    by_institution: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(train):
        by_institution[e.institution].append(i)
    keep: set[int] = set()
    for institution, index in sorted(by_institution.items()):
        keep.update(random.Random(f"{seed}|{institution}").sample(index, min(per_institution, len(index))))
    return [e for i, e in enumerate(train) if i in keep]


def drafting_order(test: list[ds.Example], batch: int, seed: int) -> list[ds.Example]:
    """The test split in the order it is drafted: each institution's reports shuffled (seeded),
    then whole batches taken from the institution least done so far. Batches stay of one
    institution (similar prompt lengths pad little) and any prefix is a proportional random
    sample of the split, which is what a partial run reports."""
    queues: dict[str, list[ds.Example]] = defaultdict(list)
    for e in test:
        queues[e.institution].append(e)
    for institution, queue in queues.items():
        random.Random(f"{seed}|{institution}").shuffle(queue)
    taken = dict.fromkeys(queues, 0)
    out: list[ds.Example] = []
    while len(out) < len(test):
        institution = min((i for i in queues if taken[i] < len(queues[i])),
                          key=lambda i: (taken[i] / len(queues[i]), i))
        out += queues[institution][taken[institution] : taken[institution] + batch]
        taken[institution] += batch
    return out


def run_eval(examples: list[ds.Example], out_dir: Path, recipe: Recipe, *, model_path: Path | None = None,
             bootstrap_config: BootstrapConfig | None = None, systems: Sequence[str] = SYSTEMS,
             progress: bool = True, device: str | None = None, batch: int = 16, fewshot_k: int = 3,
             cases_k: int = 1, train_per_institution: int | None = None,
             max_input_tokens: int = 448, partial: bool = False) -> EvalResult:
    """The systems side by side on the test split. ``partial``: train and draft nothing, score
    what earlier (killed) runs of the same command saved, on the test reports every system has."""
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        raise TrainingError(f"--systems: unknown {unknown}; known: {', '.join(SYSTEMS)}")
    bootstrap_config = bootstrap_config or BootstrapConfig()
    out_dir.mkdir(parents=True, exist_ok=True)
    data = ds.build(examples)
    if not data.test:
        raise TrainingError("the test split is empty: too few reports")
    log.info("evaluation data: %s (%d duplicates dropped)", data.counts(), data.duplicates)
    notes: dict[str, str] = {}
    texts: dict[str, list[str]] = {}
    test = drafting_order(data.test, batch, recipe.seed)

    requests = [DraftRequest(e.institution, e.accession, e.findings, e.language) for e in test]

    if "last-sentence" in systems:
        texts["last-sentence"] = [d.text for d in EchoDrafter().draft(requests)]
        notes["last-sentence"] = "the findings' last sentence"
    index = CaseIndex()  # what a site has signed before the test reports: the train split
    for e in data.train:
        index.add(e.institution, e.accession, e.findings, e.impression)
    if "retrieval" in systems:
        texts["retrieval"] = [d.text for d in RetrievalDrafter(index).draft(requests)]
        notes["retrieval"] = f"BM25 top-1 over {len(data.train)} train reports, per institution"
    model_systems = [s for s in systems if s in MODEL_SYSTEMS]
    if model_systems and partial:
        if model_path is None:
            raise TrainingError("--partial needs --model (the checkpoint the killed run used)")
        cache = _DraftCache(out_dir / "drafts", test, _model_id(model_path), recipe, max_input_tokens)
        for system in model_systems:
            texts[system], notes[system] = cache.saved(system)
    elif model_systems:
        if model_path is None:
            pairs = out_dir / "train_pairs.jsonl"
            _write_pairs(data.train, pairs)
            model_path = bootstrap(pairs, out_dir / "model", bootstrap_config, progress=progress)
            notes["base"] = f"bootstrapped on the train split ({bootstrap_config.steps} steps)"
        else:
            notes["base"] = f"checkpoint {model_path.name}"
        loaded = load_model(model_path, device)
        drafter = ModelDrafter(loaded, recipe.max_new_tokens, max_input_tokens, retrieval=index)
        for system in ("fewshot", "fewshot-rerank"):
            if system in systems and not fewshot.has_chat_template(loaded.tokenizer):
                raise TrainingError(f"--systems {system} needs an instruct base with a chat template; {model_path} has none")
        cache = _DraftCache(out_dir / "drafts", test, loaded.model_id, recipe, max_input_tokens)
        trained = data
        if train_per_institution:
            trained = ds.Dataset(subsample(data.train, train_per_institution, recipe.seed), data.val, data.test)
            log.info("adapters train on %d of %d train reports (at most %d per institution)",
                     len(trained.train), len(data.train), train_per_institution)

        def draft_all(system: str, use: str | None, note: str, fewshot_k: int = 0, cases_k: int = 0,
                      using: Drafter | None = None, extra: dict | None = None) -> list[str]:
            serving = sorted(spec.label for spec in drafter.serving.values())
            key = {"fewshot_k": fewshot_k, "cases_k": cases_k, "adapters": serving} | (extra or {})
            out = cache.get(system, key)
            drafter.fewshot_k, drafter.retrieval_k = fewshot_k, cases_k
            for start in range(len(out), len(test), batch):  # resumes where a killed run stopped
                out += draft_texts(using or drafter, test[start : start + batch], use, batch, False, system)
                cache.put(system, key, out, note)
                if progress:
                    log.info("%s: %d of %d test reports drafted", system, len(out), len(test))
            drafter.fewshot_k = drafter.retrieval_k = 0
            notes[system] = note
            return out

        if "base" in systems:
            texts["base"] = draft_all("base", BASE, notes["base"])
        for system in ("retrieval-rerank", "fewshot-rerank"):  # choices on the validation split only
            if system in systems:
                from training import rerank_eval

                reranker, choice = rerank_eval.prepare(
                    loaded, index, data.val, out_dir, max_input_tokens=max_input_tokens, progress=progress,
                    shots=rerank_eval.SHOTS if system == "fewshot-rerank" else 0)
                texts[system] = draft_all(system, BASE, choice.note(len(data.val)), using=reranker, extra=choice.key())
        if "fewshot" in systems:
            texts["fewshot"] = draft_all("fewshot", BASE, (
                f"{fewshot.system_label(fewshot_k)}: the untrained base, chat template, the {fewshot_k} most "
                f"similar train reports of the institution as worked examples"), fewshot_k=fewshot_k)
        sample = f"; trained on at most {train_per_institution} reports per institution" if train_per_institution else ""
        adapters: dict[str, AdapterSpec] = {}
        if any(s in systems for s in ("shared-adapter", "institution-adapters", "adapters-retrieval")):
            adapters[SHARED], shared_note = _refit(model_path, trained, None, recipe, out_dir, drafter, device,
                                                   progress)
        if "shared-adapter" in systems:
            drafter.set_adapters(adapters)
            texts["shared-adapter"] = draft_all("shared-adapter", SHARED, shared_note + sample)
        own_notes = []
        if "institution-adapters" in systems:
            for institution in ds.institutions_with(trained.train, recipe.min_examples):
                adapters[institution], note = _refit(model_path, trained, institution, recipe, out_dir, drafter,
                                                     device, progress)
                own_notes.append(note)
            drafter.set_adapters(adapters)
            texts["institution-adapters"] = draft_all("institution-adapters", None,  # routed
                                                      ("; ".join(own_notes) or "none had enough data") + sample)
        if "adapters-retrieval" in systems:
            drafter.set_adapters(adapters)
            which = "the institution adapters (shared for the others)" if own_notes else "the shared adapter"
            if not own_notes:
                which += f" ({shared_note})"
            texts["adapters-retrieval"] = draft_all("adapters-retrieval", None, (
                f"{which}, the {cases_k} most similar train report(s) of the institution before the prompt" + sample),
                cases_k=cases_k)
    order = [s for s in SYSTEMS if s in texts]
    n = min(len(texts[s]) for s in order)
    if n == 0:
        raise TrainingError("no system has drafts for any test report yet")
    if n < len(test):
        log.warning("partial: %d of %d test reports drafted by every system; scoring those", n, len(test))
    return EvalResult(test[:n], {s: score_drafts(test[:n], texts[s][:n]) for s in order}, notes, len(test))


def _model_id(path: Path) -> str:
    from model.bootstrap import META_FILE

    meta_path = Path(path) / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return f"{Path(path).name}@{meta.get('cache_key', 'external')}"


class _DraftCache:
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


def _refit(model_path: Path, data: ds.Dataset, institution: str | None, recipe: Recipe, out_dir: Path,
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


def _write_pairs(examples: list[ds.Example], path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for e in examples:
            f.write(json.dumps({"findings": e.findings, "impression": e.impression, "language": e.language},
                               ensure_ascii=False) + "\n")


# -- output ------------------------------------------------------------------------------------
def write_outputs(result: EvalResult, groups: Sequence[str], out_dir: Path, command: str = "") -> dict[str, Path]:
    rows = [row for group in groups for row in result.table(group)]
    paths = {"markdown": out_dir / "results.md", "csv": out_dir / "results.csv", "png": out_dir / "results.png"}
    with paths["csv"].open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["group_by", "group", "system", "n", *METRICS])
        writer.writeheader()
        writer.writerows(rows)
    paths["markdown"].write_text(markdown(result, groups, command), encoding="utf-8")
    chart(result, groups, paths["png"])
    return paths


def markdown(result: EvalResult, groups: Sequence[str], command: str = "") -> str:
    systems = list(result.scores)
    lines = []
    if command:
        lines += ["```", command, "```", ""]
    if result.test_size > len(result.test):
        lines += [f"**Partial:** {len(result.test)} of the {result.test_size} test reports, the first in the "
                  "drafting order (a seeded proportional sample per institution), drafted by every system.", ""]
    for group in groups:
        rows = result.table(group)
        for metric in METRICS:
            lines += [f"### {HEADERS[metric]} by {group.replace('_', ' ')}", "",
                      f"| {group} | n | " + " | ".join(systems) + " |",
                      "|---|---:|" + "---:|" * len(systems)]
            by_group: dict[str, dict[str, dict]] = defaultdict(dict)
            for row in rows:
                by_group[row["group"]][row["system"]] = row
            for value, cells in by_group.items():
                best = max(cells[s][metric] for s in systems) if metric.startswith("rouge") else min(
                    cells[s][metric] for s in systems)
                rendered = [(f"**{cells[s][metric]:.4f}**" if cells[s][metric] == best else f"{cells[s][metric]:.4f}")
                            for s in systems]
                name = "**all**" if value == "all" else value
                lines.append(f"| {name} | {cells[systems[0]]['n']} | " + " | ".join(rendered) + " |")
            lines.append("")
    lines += ["Systems:", ""] + [f"- `{s}`: {result.notes.get(s, '')}" for s in systems] + [""]
    lines.append("ROUGE F1 as `radflow score` computes it (jieba words for Chinese, rouge-score with stemming for "
                 "English); missed and over are the share of reports with at least one missed or over-called finding "
                 "(lexicon proxies). Bold: the best system of the row.")
    return "\n".join(lines) + "\n"


def chart(result: EvalResult, groups: Sequence[str], path: Path) -> None:
    """ROUGE-L per group and system, one panel per grouping."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(result.scores)
    fig, axes = plt.subplots(len(groups), 1, figsize=(10, 3.6 * len(groups)), squeeze=False)
    for ax, group in zip(axes[:, 0], groups):
        rows = result.table(group)
        values = list(dict.fromkeys(r["group"] for r in rows))
        width = 0.8 / len(systems)
        for j, system in enumerate(systems):
            heights = [next(r["rougeL"] for r in rows if r["group"] == v and r["system"] == system) for v in values]
            ax.bar([i + j * width for i in range(len(values))], heights, width, label=system)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(values))], values, rotation=15, fontsize=8)
        ax.set_ylabel("ROUGE-L F1")
        ax.set_ylim(0, max(r["rougeL"] for r in rows) * 1.3 + 1e-3)  # room for the legend
        ax.set_title(f"ROUGE-L by {group.replace('_', ' ')}")
        ax.legend(fontsize=7, ncol=len(systems))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
