"""Training data from signed reports: per institution and body system, deduplicated, split
80/10/10 by a hash of the accession, so a report never moves between splits across refits."""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Example:
    institution: str
    accession: str
    body_system: str
    language: str
    findings: str
    impression: str
    split: str = ""  # the corpus's own assignment (train/val/test), read only with --split-field

    @property
    def segment(self) -> tuple[str, str]:
        return self.institution, self.body_system


#: A corpus's own split names, as ``--split-field`` reads them, and the split each one means.
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "dev": "val", "test": "test", "testing": "test"}


def split_of(institution: str, accession: str, salt: str = "") -> str:
    """train (80 %), val (10 %) or test (10 %), fixed for the life of the accession. ``salt``
    moves the split (``radflow eval --split-salt``); empty is the split every refit uses."""
    key = f"{salt}|{institution}|{accession}" if salt else f"{institution}|{accession}"
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % 10
    return "train" if bucket < 8 else "val" if bucket == 8 else "test"


@dataclass
class Dataset:
    train: list[Example] = field(default_factory=list)
    val: list[Example] = field(default_factory=list)
    test: list[Example] = field(default_factory=list)
    duplicates: int = 0

    def split(self, name: str) -> list[Example]:
        return getattr(self, name)

    def only(self, institution: str | None) -> Dataset:
        if institution is None:
            return self
        train, val, test = ([e for e in self.split(s) if e.institution == institution] for s in SPLITS)
        return Dataset(train, val, test)

    def fingerprint(self) -> str:
        """Identifies the exact data, so a resumed run can tell that it trains on the same."""
        digest = hashlib.sha256()
        for name in SPLITS:
            for e in self.split(name):
                digest.update(f"{name}|{e.institution}|{e.accession}|{len(e.impression)}\n".encode())
        return digest.hexdigest()[:16]

    def counts(self) -> dict[str, int]:
        return {name: len(self.split(name)) for name in SPLITS}


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def build(examples: Iterable[Example], salt: str = "", own_split: bool = False) -> Dataset:
    """Split and deduplicate: one example per (institution, accession), and a findings/impression
    text pair seen before (a copied template report) only once. ``own_split``: each example's
    ``split`` (the corpus's assignment) instead of the hash; ``salt`` moves the hash split."""
    by_key: dict[tuple[str, str], Example] = {}
    for e in examples:
        if e.findings.strip() and e.impression.strip():
            by_key[(e.institution, e.accession)] = e  # the latest version wins (a correction)
    seen: set[tuple[str, str, str]] = set()
    data = Dataset()
    for key in sorted(by_key):
        e = by_key[key]
        text = (e.institution, _norm(e.findings), _norm(e.impression))
        if text in seen:
            data.duplicates += 1
            continue
        seen.add(text)
        name = SPLIT_NAMES[e.split.lower()] if own_split else split_of(e.institution, e.accession, salt)
        data.split(name).append(e)
    return data


def from_rows(rows: Iterable[Any]) -> Dataset:
    """From storage rows (SignedReportRow): the cleaned findings and impression."""
    return build(Example(r.institution, r.accession, r.body_system, r.language, r.findings, r.impression) for r in rows)


def institutions_with(examples: Iterable[Example], minimum: int) -> list[str]:
    """Institutions with at least ``minimum`` examples: those that get an adapter of their own."""
    counts: dict[str, int] = defaultdict(int)
    for e in examples:
        counts[e.institution] += 1
    return sorted(i for i, n in counts.items() if n >= minimum)


def by_segment(examples: Iterable[Example]) -> dict[tuple[str, str], list[Example]]:
    out: dict[tuple[str, str], list[Example]] = defaultdict(list)
    for e in examples:
        out[e.segment].append(e)
    return dict(out)


def read_jsonl(path: Path) -> list[Example]:
    """A pairs JSONL as ``radflow demo-data`` writes it."""
    out = []
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                out.append(Example(row["institution"], row["accession"], row.get("body_system", "other"),
                                   row.get("language", "en"), row.get("findings", ""), row.get("impression", "")))
    return out
