"""`radflow journal`: what the listener has acknowledged and downstream has not yet finished."""

from __future__ import annotations

import argparse
import json

from kernel.settings import Settings


def cmd_journal(settings: Settings, args: argparse.Namespace) -> int:
    from ingest.journal import read_stats

    if not settings.journal_enabled:
        print("the journal is off (RADFLOW_JOURNAL_PATH=off): an AA means only that the broker had the message")
        return 1
    path = settings.resolved_journal_path
    stats = read_stats(path, settings.journal_max_bytes)
    if stats is None:
        print(f"no journal at {path} (RADFLOW_JOURNAL_PATH); the listener makes it when it starts")
        return 1
    if args.json:
        print(json.dumps(stats.to_dict()))
        return 0
    share = stats.live_bytes / stats.max_bytes if stats.max_bytes else 0.0
    print(f"journal   {stats.path}")
    print(f"on disk   {stats.bytes / 1e6:.1f} MB; in use {stats.live_bytes / 1e6:.1f} MB of "
          f"{stats.max_bytes / 1e6:.0f} MB (RADFLOW_JOURNAL_MAX_BYTES): {share:.0%}")
    print(f"pending   {stats.pending} acknowledged messages not yet done downstream")
    print(f"oldest    {stats.oldest_pending_age:.0f} s" if stats.pending else "oldest    -")
    if share >= 0.9:
        print("the journal is nearly full: past its bound the listener answers AE. Is the worker running and "
              "keeping up (dashboard, /api/stats)? Raise RADFLOW_JOURNAL_MAX_BYTES if the disk allows.")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("journal", help="the listener's journal: size, pending messages, oldest pending age")
    p.add_argument("--json", action="store_true", help="one JSON object, as /api/stats shows it")
    p.set_defaults(func=cmd_journal)
