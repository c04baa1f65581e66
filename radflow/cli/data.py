"""`radflow score`, `demo-data` and `dlq`: offline scoring, generated reports, dead letters."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC
from pathlib import Path

from kernel.codes import DELIVERED_ACKS
from kernel.settings import Settings


def cmd_score(settings: Settings, args: argparse.Namespace) -> int:
    from streams.scoring_batch import score_jsonl

    try:
        return score_jsonl(Path(args.pairs), args.draft_field, args.reference_field, args.workers, sys.stdout, sys.stderr)
    except OSError as exc:
        print(f"radflow: cannot read --pairs {args.pairs}: {exc.strerror}", file=sys.stderr)
        return 2


def cmd_demo_data(settings: Settings, args: argparse.Namespace) -> int:
    from radflow.demodata import feed, generate_reports, write_pairs

    out = Path(args.out)
    reports = generate_reports(args.per_segment, seed=args.seed)
    write_pairs(reports, out / "pairs.jsonl")
    hl7_dir = out / "hl7"
    hl7_dir.mkdir(parents=True, exist_ok=True)
    for n, item in enumerate(feed(reports, seed=args.seed)):
        (hl7_dir / f"{n:05d}_{item.report.institution}_{item.status}.hl7").write_bytes(item.message)
    print(f"{len(reports)} reports: {out / 'pairs.jsonl'} and {hl7_dir}")
    return 0


def cmd_dlq(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import datetime

    from ingest.deadletter import read_dead_letters, replay_letters
    from ingest.listener import Listener
    from ingest.mapping import load_mappings
    from ingest.sink import KafkaSink
    from streams.topics import TopicNames

    names = TopicNames(settings.topic_prefix)

    async def run() -> int:
        letters = await read_dead_letters(settings.bootstrap_servers, names.dead_letter)
        if args.dlq_command == "list":
            # position, time, peer, size and the error: never the content, which may identify a patient
            print(f"{'position':<10} {'received (UTC)':<20} {'peer':<22} {'bytes':>6}  error")
            for s in letters:
                when = datetime.fromtimestamp(s.letter.received_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
                print(f"{s.position:<10} {when:<20} {s.letter.peer:<22} {len(s.letter.raw):>6}  {s.letter.error}")
            print(f"{len(letters)} dead letters on {names.dead_letter}")
            return 0
        chosen = letters if args.all else [s for s in letters if s.position in set(args.position)]
        if not chosen:
            print("nothing to replay: give --all or positions from `radflow dlq list`")
            return 2
        sink = KafkaSink(settings.bootstrap_servers)
        await sink.start()
        try:
            mappings = load_mappings(Path(settings.mappings_dir) if settings.mappings_dir else None)
            listener = Listener(sink, names.ingest(), mappings, dead_letter_failures=False)
            results = await replay_letters(chosen, sink, names.ingest(), listener)
        finally:
            await sink.stop()
        for stored, code in results:
            print(f"{stored.position:<10} {code}")
        stored_ok = sum(code in DELIVERED_ACKS for _, code in results)
        print(f"{stored_ok} of {len(results)} replayed letters are now stored")
        return 0 if stored_ok == len(results) else 1

    return asyncio.run(run())



def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Scoring pairs offline, writing demo data, reading and replaying the dead-letter topic."""
    p = sub.add_parser("score", help="ROUGE-1/2/L of drafts against references, offline")
    p.add_argument("--pairs", required=True, help="JSONL with a draft and a reference per line")
    p.add_argument("--draft-field", default="draft")
    p.add_argument("--reference-field", default="impression")
    p.add_argument("--workers", type=int, default=1, help="scoring processes (jieba is the bottleneck)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("demo-data", help="write generated reports (pairs JSONL and HL7 files)")
    p.add_argument("--out", required=True)
    p.add_argument("--per-segment", type=int, default=20)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=cmd_demo_data)

    dlq = sub.add_parser("dlq", help="the dead-letter topic").add_subparsers(dest="dlq_command", required=True)
    dlq.add_parser("list", help="list dead letters (position, time, peer, size, error)").set_defaults(func=cmd_dlq)
    p = dlq.add_parser("replay", help="run dead letters through ingest again")
    p.add_argument("position", nargs="*", help="positions (partition:offset) from `radflow dlq list`")
    p.add_argument("--all", action="store_true", help="replay every dead letter")
    p.set_defaults(func=cmd_dlq)
