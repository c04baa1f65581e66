"""`radflow eval`: the paper-style tables of baselines, base model and refit adapters."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kernel.settings import Settings


def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    import shlex

    from evaluation.inputs import Fields, read_reports
    from evaluation.run import run_eval
    from evaluation.tables import GROUPS, write_outputs
    from model.acquire.bootstrap import BootstrapConfig
    from training.recipe import Recipe

    groups = [g.strip() for g in args.group_by.split(",") if g.strip()]
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        print(f"radflow: --group-by {','.join(bad)} is not one of {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    if args.split_field and args.split_salt:
        print("radflow: --split-field uses the corpus's own split; --split-salt moves the hash split: give one",
              file=sys.stderr)
        return 2
    fields = Fields(args.findings_field, args.impression_field, args.institution_field, args.body_field,
                    args.id_field, args.language_field, args.split_field or "")
    examples = read_reports([Path(p) for p in args.data], fields, args.limit, sys.stderr)
    recipe = Recipe.load(args.recipe or ("paper" if args.model else "embedded")).replace(seed=args.seed)
    out = Path(args.out)
    model_path = None
    if args.model:
        import dataclasses

        from model.acquire.catalog import resolve_model
        from radflow.services import ensure_model

        resolve_model(args.model, settings.home, "--model")  # an unknown name: an error naming --model
        # a pulled name or a directory, as RADFLOW_MODEL_PATH accepts (a name not pulled yet is pulled)
        model_path = ensure_model(dataclasses.replace(settings, model_path=args.model))
    result = run_eval(examples, out, recipe, model_path=model_path,
                      bootstrap_config=BootstrapConfig(steps=args.bootstrap_steps, seed=args.seed),
                      systems=[s.strip() for s in args.systems.split(",")], fewshot_k=args.fewshot_k,
                      cases_k=args.cases_k, train_per_institution=args.train_per_institution,
                      max_input_tokens=args.max_input_tokens, partial=args.partial, consensus_k=args.consensus_k,
                      rerank_k=args.rerank_k, rerank_shots=args.rerank_shots, as_ingested=args.as_ingested,
                      split_salt=args.split_salt, own_split=bool(args.split_field))
    command = "radflow " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["eval"] else ""
    paths = write_outputs(result, groups, out, command)
    print(paths["markdown"].read_text(encoding="utf-8"))
    print("written: " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0


def add_report_fields(p: argparse.ArgumentParser) -> None:
    """Which column holds what in a JSONL or CSV of reports (evaluation/inputs.py); `radflow eval`,
    `import` and `replay` read files the same way."""
    p.add_argument("--findings-field", default="findings")
    p.add_argument("--impression-field", default="impression")
    p.add_argument("--institution-field", default="institution", help="absent: the file's name is the institution")
    p.add_argument("--body-field", default="body_part,body_system", help="a,b: the first one present")
    p.add_argument("--id-field", default="id,accession")
    p.add_argument("--language-field", default="language", help="absent: detected from the text")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`radflow eval` and its flags (the data, the systems, the fields of the input)."""
    p = sub.add_parser("eval", help="paper-style tables: baselines, base model and refit adapters side by side")
    p.add_argument("--data", required=True, action="append", help="JSONL or CSV of reports (repeatable)")
    p.add_argument("--group-by", default="institution,body_part", help="tables per institution and/or body_part")
    p.add_argument("--out", default="eval-out", help="directory for results.md, results.csv and results.png")
    p.add_argument("--systems", default="last-sentence,retrieval,base,shared-adapter,institution-adapters",
                   help="any of last-sentence, retrieval, consensus, ranker, base, fewshot (an instruct --model), shared-adapter, "
                        "institution-adapters, adapters-retrieval, retrieval-rerank, fewshot-rerank, rerank (an instruct --model)")
    p.add_argument("--model", help="a pulled model's name or a local checkpoint as the base "
                                    "(default: bootstrap one on the train split)")
    p.add_argument("--recipe", help="refit recipe (default: `embedded` for a bootstrapped base, else `paper`)")
    p.add_argument("--bootstrap-steps", type=int, default=600)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--limit", type=int, help="read at most this many rows per file")
    p.add_argument("--fewshot-k", type=int, default=3, help="worked examples in the day-0 few-shot prompt")
    p.add_argument("--consensus-k", type=int,
                   help="similar cases the consensus system votes among, one k for every institution as "
                        "RADFLOW_CONSENSUS_K serves it (default: chosen per institution on the validation split)")
    p.add_argument("--rerank-k", type=int, default=2, help="candidates of the rerank system (as RADFLOW_RERANK_K)")
    p.add_argument("--rerank-shots", type=int, default=5, help="worked examples of the rerank system (RADFLOW_RERANK_SHOTS)")
    p.add_argument("--as-ingested", action="store_true",
                   help="clean findings and impressions as ingest stores them (what `radflow serve` drafts from and scores)")
    p.add_argument("--cases-k", type=int, default=1, help="similar cases before the prompt of adapters-retrieval")
    p.add_argument("--train-per-institution", type=int,
                   help="adapters train on at most this many train reports per institution (the test split is "
                        "never subsampled)")
    p.add_argument("--max-input-tokens", type=int, default=448, help="prompt length bound (tokens)")
    p.add_argument("--split-salt", default="",
                   help="move the 80/10/10 accession-hash split (default: none, the split refits use)")
    p.add_argument("--split-field",
                   help="use the corpus's own split: this column says train, validation or test per row "
                        "(every row must have it)")
    p.add_argument("--partial", action="store_true",
                   help="draft and train nothing: score what a killed run of the same command saved in --out")
    add_report_fields(p)
    p.set_defaults(func=cmd_eval)
