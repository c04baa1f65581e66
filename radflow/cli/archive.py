"""`radflow import`, `replay` and `systems`: a site's archive of signed reports loaded before
go-live, a corpus replayed as HL7, and the drafting system that serves each segment."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from kernel.settings import Settings
from radflow.cli.evaluation import add_report_fields


def _fields(args: argparse.Namespace):  # -> evaluation.inputs.Fields
    from evaluation.inputs import Fields

    return Fields(args.findings_field, args.impression_field, args.institution_field, args.body_field,
                  args.id_field, args.language_field)


def systems_gate(settings: Settings, repository, model_needed: bool = True):  # -> training.systems_gate.SystemsGate
    """The systems gate over the signed reports in storage, with the systems of RADFLOW_SYSTEMS
    (a ranker among them is refit from storage first) and the ranker versions serving a segment."""
    from model.retrieval import CaseIndex
    from model.systems import Loaded, build, is_ranker, with_champions
    from training.recipe import Recipe
    from training.systems_gate import SystemsGate

    cases = CaseIndex()
    for row in repository.signed_pairs():
        cases.add(row.institution, row.accession, row.findings, row.impression)

    def load():  # -> LoadedModel, only when a model system is among RADFLOW_SYSTEMS
        from model.loader import load_model
        from radflow.services import ensure_model

        return load_model(ensure_model(settings))

    loaded = Loaded(cases, load, settings.max_new_tokens, decode=settings.decode, fewshot_k=settings.fewshot_k,
                    retrieval_k=settings.retrieval_k, consensus_k=settings.consensus_k, rerank_k=settings.rerank_k,
                    rerank_shots=settings.rerank_shots, rankers=settings.resolved_ranker_dir)
    if any(is_ranker(n) for n in settings.system_names):
        _refit_ranker(settings, repository)
    names = with_champions([settings.system_cold, *settings.system_names], repository.system_champions())
    drafters = build(names, loaded)
    return SystemsGate(repository, drafters, Recipe.load(settings.resolved_train_recipe), settings.system_cold,
                       settings.system_min_cases, settings.system_holdout, _publisher(settings))


def _refit_ranker(settings: Settings, repository) -> None:
    """A new ranker version from the signed reports in storage, for the gate to try (or none: why)."""
    from kernel.errors import TrainingError
    from training import dataset as ds
    from training.ranker_refit import refit_ranker

    data = ds.from_rows(repository.signed_pairs())
    try:
        refit = refit_ranker(data.train + data.val + data.test, settings.resolved_ranker_dir.parent,
                             min_reports=settings.ranker_min_reports, max_reports=settings.ranker_max_reports,
                             holdout_n=settings.system_holdout)
    except TrainingError as exc:  # e.g. no validation reports: the gate runs without a new ranker
        print(f"ranker: not trained: {exc}", file=sys.stderr)
        return
    print(f"ranker: {refit.reason}")


def _publisher(settings: Settings):  # -> training.systems_gate.Publish | None
    """Announces on the adapters topic when a broker answers (the topics made first: a publish
    must not auto-create the adapters topic with the broker's partition count)."""
    if not _broker_up(settings):
        return None
    import asyncio

    from radflow.services import adapter_publisher, ensure_all_topics

    asyncio.run(ensure_all_topics(settings))
    return adapter_publisher(settings)


def _broker_up(settings: Settings) -> bool:
    """Whether a broker answers: with none (an archive imported before `radflow serve`), the
    choices stand in storage and workers read them when they start."""
    import socket

    host, _, port = settings.bootstrap_servers.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        return True
    except (OSError, ValueError):
        return False


def _print_choices(choices: list) -> None:
    for c in choices:
        print(f"{c.institution}/{c.body_system}: {c.after} ({c.reason})")


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ingest.mapping import load_mappings
    from radflow.archive import read_split, signed_rows
    from storage.repository import Repository

    started = time.perf_counter()
    examples, duplicates = read_split([Path(p) for p in args.data], _fields(args), args.split, args.limit, sys.stderr,
                                salt=args.split_salt)
    mappings = load_mappings(Path(settings.mappings_dir) if settings.mappings_dir else None)
    repository = Repository(settings.resolved_database_url)
    added = 0
    with tqdm(total=len(examples), desc="importing", unit="report") as bar:
        for start in range(0, len(examples), args.batch):
            chunk = examples[start : start + args.batch]
            rows = []
            for institution in sorted({e.institution for e in chunk}):
                mapping = mappings.get(institution)
                words = mapping.boilerplate if mapping else ()
                rows += signed_rows([e for e in chunk if e.institution == institution], words or _default_words())
            added += repository.add_new_signed(rows)
            bar.update(len(chunk))
    seconds = time.perf_counter() - started
    institutions = len({e.institution for e in examples})
    print(f"imported {added} new signed reports of {len(examples)} read ({len(examples) - added} already stored, "
          f"{duplicates} duplicates dropped) from {institutions} institutions in {seconds:.1f} s "
          f"({len(examples) / max(seconds, 1e-9):.0f} reports/s)")
    if not args.no_choose:
        gate_started = time.perf_counter()
        choices = systems_gate(settings, repository).run()
        _print_choices(choices)
        print(f"serving systems chosen for {len(choices)} segments in {time.perf_counter() - gate_started:.1f} s")
    return 0


def _default_words() -> tuple[str, ...]:
    from ingest.clean import DEFAULT_BOILERPLATE

    return DEFAULT_BOILERPLATE


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from radflow.archive import read_split
    from radflow.replay import DraftWatch, Replay

    examples, _ = read_split([Path(p) for p in args.data], _fields(args), args.split, args.limit, sys.stderr,
                                salt=args.split_salt)

    async def run() -> int:
        watch = DraftWatch(args.host, args.watch_port) if args.watch_port is not None else None
        if watch is not None:
            await watch.server.start()
            print(f"taking drafts on {args.host}:{watch.server.port} (RADFLOW_WORKLIST_ROUTES=*={args.host}:"
                  f"{watch.server.port})", file=sys.stderr)
        try:
            replay = Replay(args.host, args.port, args.connections, args.finals, args.delay, watch)
            tally = await replay.run(examples)
        except OSError as exc:
            print(f"radflow: no MLLP listener answers on {args.host}:{args.port} (--port): {exc.strerror or exc}",
                  file=sys.stderr)
            return 2
        finally:
            if watch is not None:
                await watch.server.stop()
        print(f"replayed {len(examples)} exams over {args.connections} connections: {tally.line()}")
        if watch is not None and watch.systems:
            print("drafting systems named by the drafts: " + ", ".join(f"{k} {n}" for k, n in sorted(watch.systems.items())))
        return 0 if not tally.errors and all(ack[1] in ("AA", "CA") for ack in tally.acks) else 1

    return asyncio.run(run())


def cmd_systems(settings: Settings, args: argparse.Namespace) -> int:
    from storage.repository import Repository

    repository = Repository(settings.resolved_database_url)
    if args.systems_command == "choose":
        _print_choices(systems_gate(settings, repository).run())
        return 0
    if args.systems_command == "rollback":
        row = repository.rollback_system(args.institution, args.body_system)
        publish = _publisher(settings)
        if publish is not None:
            publish({"event": "rolled-back", "name": "systems", "version": row.system, "at": time.time()})
        print(f"{args.institution}/{args.body_system}: {row.system} serves again")
        return 0
    champions = repository.system_champions()
    drafted = repository.drafted_by_system()
    evidence: dict[tuple[str, str], list] = {}
    for ev in repository.system_evals():
        evidence.setdefault((ev.institution, ev.body_system), []).append(ev)
    print(f"{'segment':<36} {'champion':<12} {'drafted':<24} challengers (held-out n, R-L champion -> challenger, p)")
    for segment in sorted(set(champions) | set(evidence) | set(drafted)):
        made = ", ".join(f"{k or '-'} {n}" for k, n in sorted(drafted.get(segment, {}).items()))
        rows = evidence.get(segment, [])
        challengers = "; ".join(f"{r.challenger}{' (promoted)' if r.promoted else ''}: n={r.n}, "
                                f"{r.champion_rougeL:.4f} -> {r.challenger_rougeL:.4f}, p={r.p_value:.3f}" for r in rows)
        print(f"{'/'.join(segment):<36} {champions.get(segment, '(cold start)'):<12} {made:<24} {challengers or '-'}")
    return 0


def _add_fields(p: argparse.ArgumentParser) -> None:
    """The input options of `radflow eval` (evaluation/inputs.py)."""
    p.add_argument("--data", required=True, action="append", help="JSONL or CSV of reports (repeatable)")
    p.add_argument("--split", choices=("train", "validation", "test"),
                   help="only this split of `radflow eval`'s accession hash (default: every report)")
    p.add_argument("--split-salt", default="",
                   help="move the accession-hash split as `radflow eval --split-salt` does (default: none)")
    p.add_argument("--limit", type=int, help="read at most this many rows per file")
    add_report_fields(p)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("import", help="load an archive of signed reports into storage, then choose serving systems")
    _add_fields(p)
    p.add_argument("--batch", type=int, default=500, help="reports stored per transaction")
    p.add_argument("--no-choose", action="store_true", help="load only; choose serving systems later "
                                                             "(`radflow systems choose`)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("replay", help="send a corpus as HL7 ORU^R01 (P then F per exam) to an MLLP listener")
    _add_fields(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="the MLLP listener's port")
    p.add_argument("--connections", type=int, default=4, help="MLLP connections sending at once")
    p.add_argument("--finals", choices=("after-draft", "at-end", "none"), default="after-draft",
                   help="when each signed F follows: once its draft is back, after every preliminary, or never")
    p.add_argument("--delay", type=float, default=2.0,
                   help="seconds before an F without --watch-port; with it, the longest wait for a draft")
    p.add_argument("--watch-port", type=int, help="take radflow's draft ORU^R01 here (RADFLOW_WORKLIST_ROUTES) "
                                                   "to send each F once its draft is back (0: any free port)")
    p.set_defaults(func=cmd_replay)

    systems = sub.add_parser("systems", help="the drafting system serving each institution x body system")
    commands = systems.add_subparsers(dest="systems_command", required=True)
    commands.add_parser("list", help="per segment: the champion, what drafted, the challengers' evidence"
                        ).set_defaults(func=cmd_systems)
    commands.add_parser("choose", help="run the gate over the signed reports in storage").set_defaults(func=cmd_systems)
    p = commands.add_parser("rollback", help="serve a segment's previous system again")
    p.add_argument("institution")
    p.add_argument("body_system")
    p.set_defaults(func=cmd_systems)
