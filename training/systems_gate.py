"""The gate that chooses each segment's drafting system (model/systems.py).

For each institution × body system with signed reports in storage, the serving system is the
champion. Each challenger (``RADFLOW_SYSTEMS``) drafts the segment's held-out reports beside the
champion, and replaces it only when the adapters' gate (training/gate.py: mean per-report
ROUGE-L higher, paired approximate randomisation p < alpha, missed-diagnosis rate not rising
beyond its margin) says so, with alpha corrected for the number of challengers (Holm's
step-down: trying m systems on the same reports makes a chance win m times likelier); of
several winners, the largest gain. Every comparison is kept in
storage as evidence (``radflow systems list``); a promotion is announced on the adapters topic,
where every draft worker hears it and serves the new champion (streams/agents/adapters.py).

Held out: up to ``holdout`` reports of the segment, chosen by a hash of the accession (stable
across runs). Each is drafted from every other signed case of its institution: all systems
exclude the report's own accession from the cases they draw on, so a held-out report never
retrieves itself. Cold start: a segment with no champion gets ``cold`` once its institution has
``min_cases`` signed cases (the base model serves before that, and the gate leaves it alone).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from model.drafter import Drafter, DraftRequest
from storage.repository import Repository
from storage.tables import SystemEvalRow
from training import dataset as ds
from training.gate import Decision, ReportScore, decide, score_drafts
from training.recipe import Recipe

log = logging.getLogger(__name__)

Publish = Callable[[dict], None]


@dataclass
class Choice:
    """One segment's outcome: who served before, who serves now, and why."""

    institution: str
    body_system: str
    before: str  # "" when the segment had no champion
    after: str
    reason: str
    evidence: list[SystemEvalRow] = field(default_factory=list)


def holdout(examples: Sequence[ds.Example], n: int) -> list[ds.Example]:
    """Up to ``n`` of a segment's reports, by a hash of the accession (the same ones every run)."""
    def rank(e: ds.Example) -> str:
        return hashlib.sha256(f"holdout|{e.institution}|{e.accession}".encode()).hexdigest()

    return sorted(examples, key=rank)[:n]


def holm(decisions: Mapping[str, Decision], alpha: float) -> dict[str, Decision]:
    """The decisions with Holm's step-down correction applied: the challenger with the i-th
    smallest p-value (from 0) needs p < alpha / (m - i), and once one fails, every later one fails."""
    out = dict(decisions)
    m = len(decisions)
    failed = False
    for i, (name, d) in enumerate(sorted(decisions.items(), key=lambda kv: (kv[1].p_value, kv[0]))):
        level = alpha / (m - i)
        failed = failed or d.p_value >= level
        if failed and d.promote:
            out[name] = replace(d, promote=False, reason=f"gain {d.delta:+.4f} is not significant once corrected "
                                f"for {m} challengers (p={d.p_value:.3f}, Holm needs < {level:.3f})")
    return out


def draft_all(drafter: Drafter, examples: Sequence[ds.Example], batch: int = 16) -> list[str]:
    out: list[str] = []
    for start in range(0, len(examples), batch):
        out += [d.text for d in drafter.draft([DraftRequest(e.institution, e.accession, e.findings, e.language,
                                                            body_system=e.body_system)
                                               for e in examples[start : start + batch]])]
    return out


class SystemsGate:
    def __init__(self, repository: Repository, drafters: Mapping[str, Drafter], recipe: Recipe, cold: str,
                 min_cases: int, holdout: int, publish: Publish | None = None) -> None:
        self.repository, self.drafters, self.recipe = repository, dict(drafters), recipe
        self.cold, self.min_cases, self.holdout = cold, min_cases, holdout
        self.publish = publish

    def run(self) -> list[Choice]:
        """One pass over every segment; returns each segment's outcome."""
        data = ds.from_rows(self.repository.signed_pairs())
        examples = data.train + data.val + data.test
        per_institution = Counter(e.institution for e in examples)
        champions = self.repository.system_champions()
        run_at = time.time()
        out = []
        for (institution, body_system), group in sorted(ds.by_segment(examples).items()):
            if per_institution[institution] < max(1, self.min_cases):  # a champion chosen earlier stays
                before = champions.get((institution, body_system), "")
                out.append(Choice(institution, body_system, before, before or "model",
                                  f"{per_institution[institution]} signed cases, fewer than {self.min_cases}: "
                                  "the gate leaves the segment as it is"))
                continue
            out.append(self.choose(institution, body_system, group, champions.get((institution, body_system)), run_at))
        changed = [c for c in out if c.before != c.after and c.after != "model"]
        if changed and self.publish is not None:  # one event: every worker reads what serves from storage
            self.publish({"event": "promoted", "name": "systems", "version": f"{len(changed)} segments",
                          "at": time.time()})
        return out

    def choose(self, institution: str, body_system: str, group: list[ds.Example], champion: str | None,
               run_at: float) -> Choice:
        before = champion or ""
        if champion is None or champion not in self.drafters:
            champion = self.cold
            self._promote(institution, body_system, champion, "cold start")
        held = holdout(group, self.holdout)
        base = score_drafts(held, draft_all(self.drafters[champion], held))
        decisions = holm({name: decide(held, score_drafts(held, draft_all(drafter, held)), base, self.recipe)
                          for name, drafter in self.drafters.items() if name != champion}, self.recipe.alpha_level)
        evidence = [SystemEvalRow(run_at=run_at, institution=institution, body_system=body_system, champion=champion,
                                  challenger=name, n=len(held), champion_rougeL=d.champion.get("rougeL", 0.0),
                                  challenger_rougeL=d.challenger.get("rougeL", 0.0), delta_rougeL=d.delta,
                                  p_value=d.p_value, promoted=False, reason=d.reason)
                    for name, d in decisions.items()]
        winners = sorted((d.delta, n) for n, d in decisions.items() if d.promote)
        after, reason = champion, "champion kept: no challenger wins" if decisions else "no challenger configured"
        if winners:
            after = winners[-1][1]
            won = decisions[after]
            reason = f"{after} replaces {champion}: {won.reason}"
            self._promote(institution, body_system, after, reason, len(held), won.delta, won.p_value)
            next(r for r in evidence if r.challenger == after).promoted = True
        for row in evidence:  # a copy is stored: the returned evidence stays readable after the commit
            self.repository.add(SystemEvalRow(**row.model_dump(exclude={"id"})))
        log.info("segment %s/%s: %s (%d held-out reports)", institution, body_system, reason, len(held))
        return Choice(institution, body_system, before, after, reason, evidence)

    def _promote(self, institution: str, body_system: str, system: str, reason: str, n: int = 0,
                 delta: float = 0.0, p_value: float = 1.0) -> None:
        self.repository.promote_system(institution, body_system, system, reason, n, delta, p_value)


def scores_of(drafter: Drafter, examples: Sequence[ds.Example]) -> list[ReportScore]:
    """A system's per-report scores on ``examples`` (tests and `radflow systems` read them)."""
    return score_drafts(examples, draft_all(drafter, examples))
