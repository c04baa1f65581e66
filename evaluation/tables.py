"""What ``radflow eval`` writes: the mean metrics per group and system as markdown tables (the
paper's layout), CSV, and a PNG chart of ROUGE-L."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from model.scoring.aggregate import METRICS
from training import dataset as ds
from training.gate import ReportScore, approximate_randomisation, means

GROUPS = {"institution": lambda e: e.institution, "body_part": lambda e: e.body_system,
          "body_system": lambda e: e.body_system}
#: Baselines every other system is compared with, report by report, when they are in the run.
BASELINES = ("retrieval", "consensus")
ROUNDS = 5000  # approximate randomisation rounds: p-values down to about 2e-4
HEADERS = {"rouge1": "R-1", "rouge2": "R-2", "rougeL": "R-L", "missed_rate": "missed", "over_rate": "over"}


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
    lines += paired(result)
    lines += ["Systems:", ""] + [f"- `{s}`: {result.notes.get(s, '')}" for s in systems] + [""]
    lines.append("ROUGE F1 as `radflow score` computes it (jieba words for Chinese, rouge-score with stemming for "
                 "English); missed and over are the share of reports with at least one missed or over-called finding "
                 "(lexicon proxies). Bold: the best system of the row.")
    return "\n".join(lines) + "\n"


def paired(result: EvalResult) -> list[str]:
    """Each system against each baseline of the run, per institution and overall: the difference
    of mean R-L and its two-sided paired approximate-randomisation p-value (training/gate.py)."""
    lines: list[str] = []
    institutions = sorted({e.institution for e in result.test}) + ["all"]
    for baseline in (b for b in BASELINES if b in result.scores):
        others = [s for s in result.scores if s != baseline]
        if not others:
            continue
        lines += [f"### R-L against {baseline}, paired (difference, p)", "",
                  "| institution | n | " + " | ".join(others) + " |", "|---|---:|" + "---:|" * len(others)]
        for value in institutions:
            index = [i for i, e in enumerate(result.test) if value == "all" or e.institution == value]
            base = [result.scores[baseline][i].rougeL for i in index]
            cells = []
            for system in others:
                mine = [result.scores[system][i].rougeL for i in index]
                p = approximate_randomisation(mine, base, ROUNDS, seed=0)
                cells.append(f"{(sum(mine) - sum(base)) / max(1, len(index)):+.4f} (p={p:.4f})")
            lines.append(f"| {'**all**' if value == 'all' else value} | {len(index)} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


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
