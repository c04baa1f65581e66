"""What the dashboard says about drafting systems (model/systems.py): which one serves each
segment, which ones drafted its reports, and the all-time scores of each (``/api/summary``)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from storage.repository import Repository


def segment_systems(repository: Repository, served: list[dict[str, Any]] | None = None
                    ) -> dict[tuple[str, str], dict[str, Any]]:
    """Per segment (one with a champion or with scores): ``serving`` (the champion in storage,
    else the system of the segment's newest draft) and ``drafted`` ({system: scored drafts}, from
    the running sums; ``served``: ``repository.served_by_system()`` when the caller has it)."""
    champions = repository.system_champions()
    drafted: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for r in repository.served_by_system() if served is None else served:
        if r["system"]:
            drafted[(r["institution"], r["body_system"])][r["system"]] = r["n"]
        else:
            drafted.setdefault((r["institution"], r["body_system"]), {})
    out = {}
    for segment in set(champions) | set(drafted):
        serving = champions.get(segment) or repository.latest_system(*segment)
        out[segment] = {"serving": serving, "drafted": dict(drafted.get(segment, {}))}
    return out


def name_systems(segments: list[dict[str, Any]], systems: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """The dashboard's segment rows with their serving system."""
    return [{**s, "system": systems.get((s["institution"], s["body_system"]), {}).get("serving", "")} for s in segments]


def served_summary(repository: Repository) -> dict[str, Any]:
    """``systems``: per segment, the serving system and what drafted; ``served``: per institution,
    every score so far (not the rolling window) with the systems that drafted them."""
    rows = repository.served_by_system()
    systems = segment_systems(repository, rows)
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
