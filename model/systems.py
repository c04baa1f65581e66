"""The drafting systems a draft worker can serve, by name, and the router that serves one per
segment (institution × body system).

Every system is a :class:`model.drafter.Drafter`; ``REGISTRY`` maps its name to how it is built
from what the worker has loaded (:class:`Loaded`: the signed cases, and the model on first
need), so a new system is one entry:

- ``retrieval``: the impression of the most similar signed case (BM25, model/retrieval.py);
- ``consensus``: the impression that agrees most with the k most similar (model/consensus.py);
- ``rerank``: the model picks among the k most similar impressions (model/rerank.py);
- ``model``: the model as configured (adapters routed by institution, day-0 few-shot with
  ``RADFLOW_FEWSHOT_K`` on an instruct base, cases before the prompt with ``RADFLOW_RETRIEVAL_K``):
  what served before systems existed, and what serves an institution with too few signed cases;
- ``fewshot``: the base with no adapter, the k most similar cases as worked examples;
- ``adapter-cases``: the adapters, with the most similar cases before their prompt;
- ``ranker``: the trained ranker's choice among the k most similar impressions (model/ranker.py,
  LightGBM; no model call). ``ranker`` names the newest trained version (the challenger) and is
  left out while none is trained; a version the gate promoted serves as ``ranker/vNNNN``, so a
  newer version serves a segment only once it wins there too (training/ranker_refit.py trains one
  from storage before the gate runs).

Which system serves a segment is decided by the gate (training/systems_gate.py) and kept in
storage (``Repository.system_champions``); :class:`SegmentRouter` serves it, and without a
champion applies the cold-start rule: ``RADFLOW_SYSTEM_COLD`` once the institution has
``RADFLOW_SYSTEM_MIN_CASES`` signed cases, the ``model`` before that.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kernel.errors import ModelError
from model import fewshot
from model.adapters import BASE, AdapterSpec
from model.drafter import Draft, Drafter, DraftRequest, ModelDrafter

if TYPE_CHECKING:
    from model.cases import CaseSource
    from model.loader import LoadedModel
    from model.rerank import PromptStyle
    from model.retrieval import CaseIndex

log = logging.getLogger(__name__)

MODEL = "model"  # the system that needs no signed cases: the base (or its adapters) as configured
Segment = tuple[str, str]
RANKER = "ranker"  # the newest trained ranker; "ranker/vNNNN" one version (the name drafts record)
_RANKER_VERSION = re.compile(r"ranker/v\d+")


@dataclass
class Loaded:
    """What systems are built from: the signed cases, and the model loaded on first need (a
    worker serving only retrieval systems, or the gate comparing them, never loads it)."""

    cases: CaseIndex
    load_model: Callable[[], LoadedModel] | None = None
    max_new_tokens: int = 96
    max_input_tokens: int = 448
    decode: str = "hf"
    fewshot_k: int = 3
    retrieval_k: int = 0
    consensus_k: int = 5
    rerank_k: int = 2
    rerank_shots: int = 5
    rankers: Path | None = None  # the ranker's versions (RADFLOW_HOME/rankers/ranker): what ``ranker`` serves
    _model: LoadedModel | None = field(default=None, repr=False)
    _drafter: ModelDrafter | None = field(default=None, repr=False)

    def model(self) -> LoadedModel:
        if self._model is None:
            if self.load_model is None:
                raise ModelError("this system needs a model, and none was configured (RADFLOW_MODEL_PATH)")
            self._model = self.load_model()
        return self._model

    def model_drafter(self) -> ModelDrafter:
        """One ModelDrafter for every model system: they share its adapters and its thread."""
        if self._drafter is None:
            self._drafter = ModelDrafter(self.model(), self.max_new_tokens, self.max_input_tokens,
                                         retrieval=self.cases, retrieval_k=self.retrieval_k,
                                         fewshot_k=self.fewshot_k, decode=self.decode)
        return self._drafter


class Configured:
    """The shared ModelDrafter with one system's settings (few-shot k, cases k, adapter), set
    for each call: calls run one at a time on the model thread, so settings never mix."""

    def __init__(self, drafter: ModelDrafter, fewshot_k: int, retrieval_k: int, adapter: str | None) -> None:
        self.drafter, self.fewshot_k, self.retrieval_k, self.adapter = drafter, fewshot_k, retrieval_k, adapter

    def draft(self, requests: list[DraftRequest]) -> list[Draft]:
        d = self.drafter
        saved = d.fewshot_k, d.retrieval_k
        d.fewshot_k, d.retrieval_k = self.fewshot_k, self.retrieval_k
        try:
            return d.draft([dataclasses.replace(r, adapter=self.adapter) for r in requests])
        finally:
            d.fewshot_k, d.retrieval_k = saved


def _retrieval(c: Loaded) -> Drafter:
    from model.retrieval import RetrievalDrafter

    return RetrievalDrafter(c.cases)


def _consensus(c: Loaded) -> Drafter:
    from model.consensus import ConsensusDrafter

    return ConsensusDrafter(c.cases, default_k=c.consensus_k)


def rerank_drafter(loaded: LoadedModel, cases: CaseSource, k: int, shots: int, max_input_tokens: int = 448) -> Drafter:
    """The model picks among the ``k`` most similar signed impressions by their summed
    log-probability, after ``shots`` similar cases as worked examples (an instruct base; a base
    without a chat template scores in its own prompt, without examples): the setting chosen on
    validation in docs/evaluation.md. ``radflow eval --systems rerank`` drafts with this too."""
    from model.rerank import RerankDrafter, Reranker

    chat = fewshot.has_chat_template(loaded.tokenizer)
    style: PromptStyle = "chat" if chat else "template"
    reranker = Reranker(loaded, cases, style=style, family=None if chat else loaded.template_family,
                        max_input_tokens=max_input_tokens, pmi=False, shots=shots if chat else 0)
    return RerankDrafter(reranker, k=k, normalise="sum")


def _rerank(c: Loaded) -> Drafter:
    return rerank_drafter(c.model(), c.cases, c.rerank_k, c.rerank_shots, c.max_input_tokens)


def _fewshot(c: Loaded) -> Drafter:
    if not fewshot.has_chat_template(c.model().tokenizer):
        raise ModelError("the fewshot system needs an instruct base with a chat template (RADFLOW_MODEL_PATH)")
    return Configured(c.model_drafter(), c.fewshot_k or 3, 0, BASE)


REGISTRY: dict[str, Callable[[Loaded], Drafter]] = {
    "retrieval": _retrieval,
    "consensus": _consensus,
    "rerank": _rerank,
    MODEL: lambda c: c.model_drafter(),
    "fewshot": _fewshot,
    "adapter-cases": lambda c: Configured(c.model_drafter(), 0, max(1, c.retrieval_k), None),
    RANKER: lambda c: _ranker(c, RANKER),
}
#: Systems that draft from signed cases only: they can serve once an institution has some.
CASE_SYSTEMS = ("retrieval", "consensus")


def is_ranker(name: str) -> bool:
    return name == RANKER or bool(_RANKER_VERSION.fullmatch(name))


def ranker_version(loaded: Loaded, name: str) -> Path | None:
    """The version directory ``name`` serves: ``ranker`` the newest, ``ranker/vNNNN`` that one."""
    from model.ranker import RANKER_META, latest_version

    if loaded.rankers is None:
        return None
    if name == RANKER:
        return latest_version(loaded.rankers.parent, loaded.rankers.name)
    path = loaded.rankers / name.split("/", 1)[1]
    return path if (path / RANKER_META).is_file() else None


def _ranker(c: Loaded, name: str) -> Drafter:
    from model.ranker import RankerDrafter

    path = ranker_version(c, name)
    if path is None:
        raise ModelError(f"{name}: no trained ranker under {c.rankers} (`radflow systems choose` trains one "
                         "once storage has RADFLOW_RANKER_MIN_REPORTS signed reports)")
    return RankerDrafter.load(path, c.cases)  # its drafts record ranker/vNNNN


def build(names: list[str], loaded: Loaded) -> dict[str, Drafter]:
    """The drafters of ``names`` (RADFLOW_SYSTEMS and the champions), each built once, by the name
    a segment's champion is stored under: ``ranker`` becomes its newest version, ``ranker/vNNNN``,
    and is left out (logged) while no ranker is trained, as is a champion version since deleted."""
    unknown = [n for n in names if n not in REGISTRY and not is_ranker(n)]
    if unknown:
        raise ModelError(f"RADFLOW_SYSTEMS: unknown {unknown}; known: {', '.join(REGISTRY)}, ranker/vNNNN")
    out: dict[str, Drafter] = {}
    for name in dict.fromkeys(names):
        if not is_ranker(name):
            out[name] = REGISTRY[name](loaded)
            continue
        path = ranker_version(loaded, name)
        if path is None:
            log.info("%s: no trained ranker under %s, not served", name, loaded.rankers)
        elif f"{RANKER}/{path.name}" not in out:
            out[f"{RANKER}/{path.name}"] = _ranker(loaded, f"{RANKER}/{path.name}")
    return out


def with_champions(names: list[str], champions: Mapping[Segment, str]) -> list[str]:
    """``names`` and every ranker version that serves a segment (they stay served beside the newest)."""
    return [*names, *sorted({n for n in champions.values() if _RANKER_VERSION.fullmatch(n)})]


class SegmentRouter:
    """A drafter that drafts each report with its segment's serving system and records which."""

    def __init__(self, drafters: Mapping[str, Drafter], cases: CaseIndex | None, cold: str = "retrieval",
                 min_cases: int = 50, champions: Mapping[Segment, str] | None = None,
                 loaded: Loaded | None = None) -> None:
        self.drafters = dict(drafters)
        self.cases, self.cold, self.min_cases = cases, cold, min_cases
        self.loaded = loaded  # builds a ranker version promoted while this worker runs
        self.champions: dict[Segment, str] = {}
        self.set_champions(champions or {})

    def set_champions(self, champions: Mapping[Segment, str]) -> list[str]:
        """Serve ``champions`` (from storage); returns what changed. A champion this worker has not
        built (RADFLOW_SYSTEMS differs) is left to the cold-start rule, with a warning; a ranker
        version promoted since this worker started is loaded (a text file of trees: milliseconds)."""
        wanted = {}
        for segment, name in champions.items():
            if name not in self.drafters and self.loaded is not None and _RANKER_VERSION.fullmatch(name):
                self.drafters.update(build([name], self.loaded))
            if name in self.drafters:
                wanted[segment] = name
            else:
                log.warning("segment %s/%s: champion %s is not among this worker's systems (RADFLOW_SYSTEMS)",
                            *segment, name)
        changes = [f"{i}/{b} -> {n}" for (i, b), n in sorted(wanted.items()) if self.champions.get((i, b)) != n]
        self.champions = wanted
        if changes:
            log.info("systems now serving: %s", ", ".join(changes))
        return changes

    def system_for(self, institution: str, body_system: str) -> str:
        chosen = self.champions.get((institution, body_system))
        if chosen is not None:
            return chosen
        count = getattr(self.cases, "count", None)
        if self.cold in self.drafters and count is not None and count(institution) >= max(1, self.min_cases):
            return self.cold
        return MODEL if MODEL in self.drafters else next(iter(self.drafters))

    def draft(self, requests: list[DraftRequest]) -> list[Draft]:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            groups[self.system_for(r.institution, r.body_system)].append(i)
        out: list[Draft | None] = [None] * len(requests)
        for name, index in groups.items():
            for i, d in zip(index, self.drafters[name].draft([requests[i] for i in index]), strict=True):
                out[i] = dataclasses.replace(d, system=name)
        return [d for d in out if d is not None]

    def set_adapters(self, wanted: Mapping[str, AdapterSpec]) -> list[str]:
        """Adapters go to the model systems' shared drafter (hot swap, streams/agents/adapters.py)."""
        for drafter in self.drafters.values():
            target = drafter.drafter if isinstance(drafter, Configured) else drafter
            if isinstance(target, ModelDrafter):
                return target.set_adapters(wanted)
        return []
