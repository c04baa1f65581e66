"""The worker's counters since start, served at /api/stats and as a Prometheus counter."""

from __future__ import annotations

from collections.abc import MutableMapping

STAT_KEYS = (
    "drafted",  # reports drafted
    "scored",  # pairs scored
    "adapter_swaps",  # adapters loaded or unloaded by a hot swap
    "offsets_reread",  # offsets read again after Faust dropped them (streams.offsets)
    "acks_tidied",  # duplicate or stale acks dropped (streams.offsets)
    "gaps_refused",  # false gaps refused (streams.offsets)
    "halves_from_storage",  # pair halves found in storage because the table lacked them
    "worklist_delivered",  # drafts a RIS accepted
    "worklist_failed",  # drafts a RIS rejected, or could not be reached for
    "replays_skipped",  # messages or records seen again whose effect storage already holds
    "pairs_unchanged",  # pairs completed again from the same texts (e.g. the draft record after storage paired it): not re-scored
    "worklist_swept",  # stored drafts sent by the delivery sweep (not delivered when made)
)

Stats = MutableMapping[str, int]


def new_stats() -> dict[str, int]:
    return dict.fromkeys(STAT_KEYS, 0)
