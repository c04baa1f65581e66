"""``radflow eval``: the paper's evaluation tables for several systems side by side, in one run.

Reports are split 80/10/10 by the same accession hash as the refits. What needs choosing (the
prompt template of each adapter) is chosen on the validation split; the test split is drafted
once per system and only scored. Systems:

- ``last-sentence``: the findings' last sentence (a trivial baseline);
- ``retrieval``: the impression of the most similar train report of the same institution (BM25);
- ``base``: the base model with its own prompt (a checkpoint, or one bootstrapped on the train split);
- ``shared-adapter``: one LoRA adapter refit on every institution's train split;
- ``institution-adapters``: an adapter per institution with enough reports (others: the shared one).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from model.adapters import BASE, SHARED, AdapterSpec
from model.bootstrap import BootstrapConfig, bootstrap
from model.drafter import DraftRequest, EchoDrafter, ModelDrafter
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

SYSTEMS = ("last-sentence", "retrieval", "base", "shared-adapter", "institution-adapters")
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


def run_eval(examples: list[ds.Example], out_dir: Path, recipe: Recipe, *, model_path: Path | None = None,
             bootstrap_config: BootstrapConfig | None = None, systems: Sequence[str] = SYSTEMS,
             progress: bool = True, device: str | None = None, batch: int = 16) -> EvalResult:
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
    test = data.test

    requests = [DraftRequest(e.institution, e.accession, e.findings, e.language) for e in test]

    if "last-sentence" in systems:
        texts["last-sentence"] = [d.text for d in EchoDrafter().draft(requests)]
        notes["last-sentence"] = "the findings' last sentence"
    if "retrieval" in systems:
        index = CaseIndex()
        for e in data.train:
            index.add(e.institution, e.accession, e.findings, e.impression)
        texts["retrieval"] = [d.text for d in RetrievalDrafter(index).draft(requests)]
        notes["retrieval"] = f"BM25 top-1 over {len(data.train)} train reports, per institution"
    model_systems = [s for s in systems if s in ("base", "shared-adapter", "institution-adapters")]
    if model_systems:
        if model_path is None:
            pairs = out_dir / "train_pairs.jsonl"
            _write_pairs(data.train, pairs)
            model_path = bootstrap(pairs, out_dir / "model", bootstrap_config, progress=progress)
            notes["base"] = f"bootstrapped on the train split ({bootstrap_config.steps} steps)"
        else:
            notes["base"] = f"checkpoint {model_path.name}"
        drafter = ModelDrafter(load_model(model_path, device), recipe.max_new_tokens)

        def draft_all(use: str | None, what: str) -> list[str]:
            return draft_texts(drafter, test, use, batch, progress, what)

        if "base" in systems:
            texts["base"] = draft_all(BASE, "base")
        adapters: dict[str, AdapterSpec] = {}
        if "shared-adapter" in systems or "institution-adapters" in systems:
            adapters[SHARED], shared_note = _refit(model_path, data, None, recipe, out_dir, drafter, device, progress)
        if "shared-adapter" in systems:
            drafter.set_adapters(adapters)
            texts["shared-adapter"] = draft_all(SHARED, "shared adapter")
            notes["shared-adapter"] = shared_note
        if "institution-adapters" in systems:
            own_notes = []
            for institution in ds.institutions_with(data.train, recipe.min_examples):
                adapters[institution], note = _refit(model_path, data, institution, recipe, out_dir, drafter, device,
                                                     progress)
                own_notes.append(note)
            drafter.set_adapters(adapters)
            texts["institution-adapters"] = draft_all(None, "institution adapters")  # routed
            notes["institution-adapters"] = "; ".join(own_notes) or "none had enough data"
    order = [s for s in SYSTEMS if s in texts]
    return EvalResult(test, {s: score_drafts(test, texts[s]) for s in order}, notes)


def _refit(model_path: Path, data: ds.Dataset, institution: str | None, recipe: Recipe, out_dir: Path,
           drafter: ModelDrafter, device: str | None, progress: bool) -> tuple[AdapterSpec, str]:
    """An adapter on the train split, its template chosen on the validation split; and how."""
    name = institution or SHARED
    sub = data.only(institution)
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
