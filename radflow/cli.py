"""The `radflow` command line. Subcommands map to functions; settings come from the environment."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Callable

from radflow.errors import RadflowError
from radflow.settings import Settings


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from radflow.demo import run_demo

    return run_demo(settings, per_segment=args.per_segment, wait=not args.no_wait)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import dataclasses

    from ingest.listener import IngestTopics
    from ingest.service import start_ingest
    from radflow.demo import ensure_model, start_stack, wait_for_dashboard
    from streams.topics import TopicNames

    settings = dataclasses.replace(settings, model_path=str(ensure_model(settings)))
    running = start_stack(settings, settings.home / "logs")
    try:
        url = wait_for_dashboard(settings, running.worker)
        names = TopicNames(settings.topic_prefix)

        async def listen() -> None:
            service = await start_ingest(
                settings.mllp_host, settings.mllp_port, IngestTopics(names.reports, names.dead_letter),
                bootstrap_servers=settings.bootstrap_servers,
            )
            print(f"MLLP on {settings.mllp_host}:{service.server.port}; dashboard {url}; Ctrl-C stops.")
            try:
                while running.worker.poll() is None:
                    await asyncio.sleep(0.5)
            finally:
                await service.stop()

        asyncio.run(listen())
    except KeyboardInterrupt:
        print("\nstopping ...")
    finally:
        running.stop()
    return 0


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from ingest.listener import IngestTopics
    from ingest.service import start_ingest
    from radflow.broker import ensure_topics
    from streams.topics import TopicNames

    names = TopicNames(settings.topic_prefix)
    port = args.port if args.port is not None else settings.mllp_port

    async def listen() -> None:
        await ensure_topics(settings.bootstrap_servers, names.source_topics() + names.changelog_topics(), settings.partitions)
        service = await start_ingest(
            settings.mllp_host, port, IngestTopics(names.reports, names.dead_letter),
            bootstrap_servers=settings.bootstrap_servers,
        )
        print(f"MLLP listener on {settings.mllp_host}:{service.server.port}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await service.stop()

    try:
        asyncio.run(listen())
    except KeyboardInterrupt:
        pass
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from streams.worker import run_worker

    run_worker(settings)
    return 0


def cmd_model_bootstrap(settings: Settings, args: argparse.Namespace) -> int:
    from model.bootstrap import BootstrapConfig, bootstrap
    from radflow.demo import ensure_model

    if args.pairs:
        out = Path(args.out) if args.out else settings.resolved_model_path
        path = bootstrap(Path(args.pairs), out, BootstrapConfig(steps=args.steps or settings.bootstrap_steps))
    else:
        path = ensure_model(settings)
    print(f"model ready: {path}")
    return 0


def cmd_score(settings: Settings, args: argparse.Namespace) -> int:
    from streams.rouge import score

    totals = [0.0, 0.0, 0.0]
    n = 0
    with open(args.pairs, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            draft = row.get(args.draft_field)
            reference = row.get(args.reference_field)
            if draft is None or reference is None:
                print(f"line {line_no}: missing {args.draft_field!r} or {args.reference_field!r}; skipped", file=sys.stderr)
                continue
            r = score(draft, reference, row.get("language"))
            totals = [totals[0] + r.rouge1, totals[1] + r.rouge2, totals[2] + r.rougeL]
            n += 1
            print(json.dumps({"id": row.get("id", line_no), "rouge1": r.rouge1, "rouge2": r.rouge2, "rougeL": r.rougeL}))
    if n:
        print(f"\n{'n':>6} {'R-1':>6} {'R-2':>6} {'R-L':>6}\n{n:>6} " + " ".join(f"{t / n:>6.3f}" for t in totals), file=sys.stderr)
    return 0 if n else 1


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


def cmd_settings(settings: Settings, args: argparse.Namespace) -> int:
    for var, default, doc in Settings.table():
        print(f"{var:<30} {default!s:<14} {doc}")
    return 0


def _not_yet(issue: int, what: str) -> Callable[[Settings, argparse.Namespace], int]:
    def run(settings: Settings, args: argparse.Namespace) -> int:
        print(f"radflow: {what} is not implemented yet (issue #{issue})", file=sys.stderr)
        return 2

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radflow", description="Draft radiology impressions from HL7 in real time.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="embedded broker + worker + listener, replay a generated feed, show ROUGE")
    p.add_argument("--per-segment", type=int, default=6, help="reports per institution x body system")
    p.add_argument("--no-wait", action="store_true", help="exit after the table instead of serving the dashboard")
    p.set_defaults(func=cmd_demo)
    sub.add_parser("serve", help="broker (if none configured) + listener + worker + dashboard").set_defaults(func=cmd_serve)
    p = sub.add_parser("ingest", help="the MLLP listener only")
    p.add_argument("--port", type=int, default=None, help="overrides RADFLOW_MLLP_PORT")
    p.set_defaults(func=cmd_ingest)
    sub.add_parser("worker", help="the Faust worker (draft and score agents, dashboard)").set_defaults(func=cmd_worker)

    model = sub.add_parser("model", help="model management").add_subparsers(dest="model_command", required=True)
    p = model.add_parser("bootstrap", help="train (or reuse) the small local model")
    p.add_argument("--pairs", help="findings/impression JSONL (default: generated demo data)")
    p.add_argument("--out", help="output directory (default: RADFLOW_MODEL_PATH or the bootstrap cache)")
    p.add_argument("--steps", type=int, default=None, help="overrides RADFLOW_BOOTSTRAP_STEPS")
    p.set_defaults(func=cmd_model_bootstrap)

    p = sub.add_parser("score", help="ROUGE-1/2/L of drafts against references, offline")
    p.add_argument("--pairs", required=True, help="JSONL with a draft and a reference per line")
    p.add_argument("--draft-field", default="draft")
    p.add_argument("--reference-field", default="impression")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("demo-data", help="write generated reports (pairs JSONL and HL7 files)")
    p.add_argument("--out", required=True)
    p.add_argument("--per-segment", type=int, default=20)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=cmd_demo_data)

    sub.add_parser("settings", help="list the settings and their variables").set_defaults(func=cmd_settings)
    sub.add_parser("train", help="refit LoRA adapters (not yet: issue #5)").set_defaults(func=_not_yet(5, "train"))
    sub.add_parser("eval", help="paper-style evaluation tables (not yet: issue #7)").set_defaults(func=_not_yet(7, "eval"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        _configure_logging(settings)
        return int(args.func(settings, args) or 0)
    except RadflowError as exc:
        print(f"radflow: {exc}", file=sys.stderr)
        return 2
