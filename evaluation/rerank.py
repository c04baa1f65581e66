"""``retrieval-rerank`` in ``radflow eval``: the model picks among the k most similar signed cases.

The number of candidates ``k`` and the score's normalisation (model/rerank.py) are chosen on the
validation split only: every validation report's top ``max(ks)`` candidates are scored once (the
scores are saved under ``<out>/rerank/``, so a killed run continues), each (k, normalisation)
is read off those scores, and the best mean ROUGE-L wins (ties: the smaller k, then the order of
``NORMALISATIONS``). k = 1 is retrieval itself, so the choice falls back to it when ranking does not
pay on validation. Two controls without the model are scored beside it on validation: ``vote``
(the impression most frequent among the top k, ties to BM25's order) and ``shortest``.
The test split is then drafted once with the chosen setting.

``fewshot-rerank`` is the same with the ``SHOTS`` most similar cases as worked examples in the
scoring prompt (the same examples whatever k, so one scoring pass serves the whole grid; no PMI).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from model import fewshot
from model.cases import Case, CaseSource
from model.drafter import DraftRequest
from model.loader import LoadedModel
from model.rerank import NORMALISATIONS, Normalise, RerankDrafter, Reranker, Scored, best, same_text
from training import dataset as ds
from training.gate import means, score_drafts

log = logging.getLogger(__name__)

KS = (1, 2, 3, 4, 5)
SHOTS = 5
CONTROLS = ("vote", "shortest")


@dataclass(frozen=True)
class Choice:
    k: int
    normalise: Normalise
    validation: dict[str, dict[str, float]]  # "k3-mean" / "vote-k3" -> {institution or "all": mean R-L}
    shots: int = 0

    def note(self, n_val: int) -> str:
        best_all = self.validation[f"k{self.k}-{self.normalise}"]["all"]
        context = (f"the findings after the {self.shots} most similar cases as worked examples" if self.shots
                   else "the findings")
        return (f"the untrained base scores the {self.k} most similar train reports' impressions of the institution "
                f"(log-probability given {context}, {self.normalise}); k and the score chosen on the validation "
                f"split ({n_val} reports, R-L {best_all:.3f}; k=1, i.e. retrieval: "
                f"{self.validation[f'k1-{self.normalise}']['all']:.3f})")

    def key(self) -> dict[str, object]:
        key: dict[str, object] = {"rerank_k": self.k, "rerank_normalise": self.normalise}
        if self.shots:  # absent for retrieval-rerank, so its saved drafts stay valid
            key["rerank_shots"] = self.shots
        return key


def _save(path: Path, scored: dict[str, list[Scored]]) -> None:
    rows = {acc: [[s.case.key, s.case.impression, s.rank, s.logprob, s.tokens, s.prior] for s in items]
            for acc, items in scored.items()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def _load(path: Path) -> dict[str, list[Scored]]:
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text(encoding="utf-8"))
    return {acc: [Scored(Case(key, "", impression), rank, logprob, tokens, prior)
                  for key, impression, rank, logprob, tokens, prior in items] for acc, items in rows.items()}


def score_split(reranker: Reranker, examples: Sequence[ds.Example], k: int, path: Path,
                every: int = 16, progress: bool = True) -> dict[str, list[Scored]]:
    """Each report's top-``k`` candidates with their scores, saved to ``path`` every ``every`` reports."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scored = _load(path)
    todo = [e for e in examples if e.accession not in scored]
    for n, e in enumerate(todo, start=1):
        scored[e.accession] = reranker.score(DraftRequest(e.institution, e.accession, e.findings, e.language), k)
        if n % every == 0 or n == len(todo):
            _save(path, scored)
            if progress:
                log.info("rerank: %d of %d validation reports scored", len(scored), len(examples))
    return scored


def vote(scored: Sequence[Scored], counts: Counter[str], k: int) -> Scored | None:
    """The candidate whose impression occurs most often among the top ``k`` (ties: BM25's order)."""
    pool = [s for s in scored if s.rank < k]
    return max(pool, key=lambda s: (counts[same_text(s.case.impression)], -s.rank), default=None)


def _mean_by_institution(examples: Sequence[ds.Example], texts: Sequence[str]) -> dict[str, float]:
    scores = score_drafts(examples, texts)
    out = {inst: means([s for s, e in zip(scores, examples) if e.institution == inst])["rougeL"]
           for inst in sorted({e.institution for e in examples})}
    out["all"] = means(scores)["rougeL"]
    return out


def choose(examples: Sequence[ds.Example], scored: dict[str, list[Scored]], cases: CaseSource,
           ks: Sequence[int] = KS, normalisations: Sequence[Normalise] = NORMALISATIONS) -> Choice:
    """The (k, normalisation) with the best mean validation ROUGE-L, with every cell of the grid."""
    validation: dict[str, dict[str, float]] = {}
    # the controls' candidates with duplicates kept (``scored`` holds each impression once); one
    # search at the largest k serves every k, since a top-k is a prefix of the top-max(ks)
    found = {e.accession: cases.similar(e.institution, e.findings, max(ks), exclude=e.accession) for e in examples}
    for k in ks:
        for how in normalisations:
            picks = [best(scored[e.accession], how, k) for e in examples]
            validation[f"k{k}-{how}"] = _mean_by_institution(examples, [p.case.impression if p else "" for p in picks])
        # the controls: the same candidates, chosen without the model
        counts = {acc: Counter(same_text(c.impression) for c in items[:k]) for acc, items in found.items()}
        voted = [vote(scored[e.accession], counts[e.accession], k) for e in examples]
        validation[f"vote-k{k}"] = _mean_by_institution(examples, [p.case.impression if p else "" for p in voted])
        shortest = [min((s for s in scored[e.accession] if s.rank < k), key=lambda s: (len(s.case.impression), s.rank),
                        default=None) for e in examples]
        validation[f"shortest-k{k}"] = _mean_by_institution(examples,
                                                            [p.case.impression if p else "" for p in shortest])
    grid = [(k, how) for k in ks for how in normalisations]
    k, how = max(grid, key=lambda c: (round(validation[f"k{c[0]}-{c[1]}"]["all"], 6), -c[0],
                                      -normalisations.index(c[1])))
    return Choice(k, how, validation)


def validation_table(choice: Choice) -> str:
    """The validation grid as a markdown table (mean R-L per institution)."""
    names = list(next(iter(choice.validation.values())))
    lines = ["| setting | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for setting, row in choice.validation.items():
        mark = "**" if setting == f"k{choice.k}-{choice.normalise}" else ""
        lines.append(f"| {mark}{setting}{mark} | " + " | ".join(f"{row[n]:.4f}" for n in names) + " |")
    return "\n".join(lines)


def prepare(loaded: LoadedModel, cases: CaseSource, val: Sequence[ds.Example], out_dir: Path, *,
            max_input_tokens: int = 448, ks: Sequence[int] = KS, shots: int = 0,
            progress: bool = True) -> tuple[RerankDrafter, Choice]:
    """Score the validation split, choose k and the normalisation on it, and return the drafter
    for the test split; the validation grid is written to ``<out>/rerank/validation[-shotsN].md``.
    ``shots``: worked examples in the scoring prompt (an instruct base only)."""
    chat = fewshot.has_chat_template(loaded.tokenizer)  # an instruct base: its chat; else its own template
    if shots and not chat:
        raise ValueError("worked examples in the scoring prompt need an instruct base with a chat template")
    reranker = Reranker(loaded, cases, style="chat" if chat else "template",
                        family=None if chat else loaded.template_family, max_input_tokens=max_input_tokens,
                        pmi=not shots, shots=shots)
    suffix = f"-shots{shots}" if shots else ""
    scored = score_split(reranker, val, max(ks), out_dir / "rerank" / f"validation-scores{suffix}.json",
                         progress=progress)
    normalisations = tuple(n for n in NORMALISATIONS if n != "pmi" or not shots)
    found = choose(val, scored, cases, ks, normalisations)
    choice = Choice(found.k, found.normalise, found.validation, shots)
    (out_dir / "rerank" / f"validation{suffix}.md").write_text(validation_table(choice) + "\n", encoding="utf-8")
    log.info("rerank: chosen on validation: k=%d, %s (R-L %.4f)\n%s", choice.k, choice.normalise,
             choice.validation[f"k{choice.k}-{choice.normalise}"]["all"], validation_table(choice))
    reranker.pmi = choice.normalise == "pmi"
    return RerankDrafter(reranker, choice.k, choice.normalise), choice
