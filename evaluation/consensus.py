"""``consensus`` and ``ranker`` in ``radflow eval``: choices among the retrieved signed impressions
made without the language model, each chosen on the validation split only.

- ``consensus`` (model/consensus.py): the impression with the highest mean R-L against the other
  candidates among the ``k`` nearest; ``k`` chosen per institution on validation from ``KS``
  (k = 1 is retrieval itself, so an institution where agreement does not pay keeps the nearest).
- ``ranker`` (model/ranker.py): LightGBM lambdarank trained on the train split (leave-one-out
  neighbours as candidates); ``k``, leaves and trees chosen on validation (training/ranker_train.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from model.consensus import ConsensusDrafter
from model.drafter import DraftRequest
from model.ranker import Ranker, RankerDrafter
from model.retrieval import CaseIndex
from training import dataset as ds
from training import ranker_train as rt
from training.gate import means, score_drafts

log = logging.getLogger(__name__)

KS = (1, 3, 5, 7, 10, 15)


def requests_of(examples: Sequence[ds.Example]) -> list[DraftRequest]:
    return [DraftRequest(e.institution, e.accession, e.findings, e.language) for e in examples]


@dataclass(frozen=True)
class ConsensusChoice:
    k_by_institution: dict[str, int]
    validation: dict[str, dict[int, float]]  # institution -> k -> mean validation R-L

    def note(self) -> str:
        chosen = ", ".join(f"{i}: k={k} (R-L {self.validation[i][k]:.3f}; k=1 {self.validation[i][1]:.3f})"
                           for i, k in sorted(self.k_by_institution.items()))
        return ("the impression with the highest mean R-L against the other candidates among the k nearest train "
                f"reports of the institution; k chosen per institution on the validation split ({chosen})")


def choose_consensus(index: CaseIndex, val: Sequence[ds.Example], ks: Sequence[int] = KS) -> ConsensusChoice:
    """Per institution, the k of ``ks`` with the best mean validation R-L (ties: the smaller k)."""
    validation: dict[str, dict[int, float]] = {}
    for institution in sorted({e.institution for e in val}):
        own = [e for e in val if e.institution == institution]
        for k in ks:
            drafts = ConsensusDrafter(index, k).draft(requests_of(own))
            validation.setdefault(institution, {})[k] = means(score_drafts(own, [d.text for d in drafts]))["rougeL"]
    chosen = {i: max(ks, key=lambda k: (round(row[k], 6), -k)) for i, row in validation.items()}
    log.info("consensus: k chosen on validation per institution: %s", chosen)
    return ConsensusChoice(chosen, validation)


def consensus_drafts(index: CaseIndex, val: Sequence[ds.Example], test: Sequence[ds.Example]) -> tuple[list[str], str]:
    choice = choose_consensus(index, val)
    drafter = ConsensusDrafter(index, 5, choice.k_by_institution)
    return [d.text for d in drafter.draft(requests_of(test))], choice.note()


def ranker_drafts(train: Sequence[ds.Example], val: Sequence[ds.Example], test: Sequence[ds.Example],
                  index: CaseIndex) -> tuple[list[str], str]:
    """The ranker chosen on validation, trained on the train split, drafting the test split from
    the train split's cases (as retrieval does)."""
    chosen = rt.select(train, val, rt.KS, rt.LEAVES, rt.TREES, rt.PENALTIES)  # read now: a test may narrow the grid
    drafts = RankerDrafter(Ranker(chosen.booster, chosen.k), index, "ranker/eval").draft(requests_of(test))
    (rl, missed), (top_rl, top_missed) = chosen.validation[chosen.cell], chosen.validation[f"k{chosen.k}-top1"]
    note = (f"LightGBM lambdarank over the k={chosen.k} nearest train reports' impressions ({chosen.leaves} leaves, "
            f"{chosen.trees} trees, missed-finding penalty {chosen.penalty}; chosen on the validation split: R-L "
            f"{rl:.3f}, missed {missed:.3f}, against top-1 {top_rl:.3f}, {top_missed:.3f}; oracle "
            f"{chosen.validation[f'k{chosen.k}-oracle'][0]:.3f}; missed-finding rule met: {chosen.rule}); trained on "
            f"{len(train)} train reports, leave-one-out neighbours as candidates")
    return [d.text for d in drafts], note
