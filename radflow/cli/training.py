"""`radflow train` and `radflow adapters`: refit LoRA adapters, promote and roll back versions."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from kernel.settings import Settings

if TYPE_CHECKING:
    from training.refit import Refitter


def _refitter(settings: Settings, args: argparse.Namespace, need_model: bool = True) -> Refitter:
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

    from radflow.cli.archive import systems_gate
    from training.schedule import parse_interval, run_schedule

    refitter = _refitter(settings, args)
    if args.every:
        every = parse_interval(args.every)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            # the systems gate as `radflow systems choose` runs it, built afresh each round: its case
            # index and ranker refit take in the reports signed since the last one
            run_schedule(refitter, refitter.repository, every, stop,
                         choose=lambda: systems_gate(settings, refitter.repository).run())
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



def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Refitting on the signed reports in storage, and the adapter versions it made."""
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
