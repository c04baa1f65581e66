"""What the dashboard says about drafting systems (model/systems.py): which one serves each
segment, which ones drafted its reports, and the all-time scores of each (``/api/summary``)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from storage.repository import Repository


def segment_systems(repository: Repository) -> dict[tuple[str, str], dict[str, Any]]:
    """Per segment: ``serving`` (the champion in storage, else the system that drafted most of
    its reports) and ``drafted`` ({system: drafts})."""
    champions = repository.system_champions()
    drafted = repository.drafted_by_system()
    out = {}
    for segment in set(champions) | set(drafted):
        made = {k: v for k, v in drafted.get(segment, {}).items() if k}
        serving = champions.get(segment) or (max(made, key=lambda k: (made[k], k)) if made else "")
        out[segment] = {"serving": serving, "drafted": made}
    return out


def name_systems(segments: list[dict[str, Any]], systems: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """The dashboard's segment rows with their serving system."""
    return [{**s, "system": systems.get((s["institution"], s["body_system"]), {}).get("serving", "")} for s in segments]


def served_summary(repository: Repository) -> dict[str, Any]:
    """``systems``: per segment, the serving system and what drafted; ``served``: per institution,
    every score so far (not the rolling window) with the systems that drafted them."""
    systems = segment_systems(repository)
    rows = repository.served_by_system()
    per: dict[str, dict[str, Any]] = defaultdict(lambda: {"n": 0, "rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0,
                                                         "systems": defaultdict(int)})
    for r in rows:
        total = per[r["institution"]]
        total["n"] += r["n"]
        for metric in ("rouge1", "rouge2", "rougeL"):
            total[metric] += r[metric] * r["n"]
        total["systems"][r["system"]] += r["n"]
    served = []
    for institution, total in sorted(per.items()):
        n = total["n"]
        served.append({"institution": institution, "n": n,
                       **{m: total[m] / n if n else 0.0 for m in ("rouge1", "rouge2", "rougeL")},
                       "systems": dict(total["systems"]),
                       "serving": sorted({v["serving"] for (i, _), v in systems.items() if i == institution and v["serving"]})})
    return {"systems": [{"institution": i, "body_system": b, **v} for (i, b), v in sorted(systems.items())],
            "served": served, "served_by_system": rows}
