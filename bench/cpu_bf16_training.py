"""Does bf16 autocast in CPU training cost adapter quality? One run, two refits, one table.

The shared adapter is trained twice with the same recipe (default ``smollm2-cpu``), the same
seeded examples (``--train-per-corpus`` of each corpus, never a drafted report nor its findings'
text under another id) and the same
schedule: once in float32, once with ``cpu_bf16: true`` (bf16 autocast on CPU, AVX-512 BF16).
Each then drafts the same held-out reports of each corpus (``--reports``, spread over the file,
as bench/cpu_model.py takes them), batch by batch in turn so the machine's load falls on both
alike. Per corpus: R-L of each, the delta (bf16 minus float32) with its paired
approximate-randomisation p-value, the share of identical drafts; and each refit's wall time.
The rule of issue #20: bf16 becomes the CPU default where |ΔR-L| ≤ 0.005 on every corpus.

Usage: python bench/cpu_bf16_training.py --model /path/to/hf-dir [--train-per-corpus 80]
       [--reports 100] [--corpora iu_xray_en,covctr_zh,medpix2_en] [--work DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cpu_model import LANGUAGES, REPORTS, reports  # noqa: E402

from model.adapters import SHARED  # noqa: E402
from model.drafter import DraftRequest, ModelDrafter  # noqa: E402
from model.loader import load_model  # noqa: E402
from model.rerank import same_text  # noqa: E402
from model.scoring import rouge  # noqa: E402
from training.dataset import Example  # noqa: E402
from training.gate import approximate_randomisation  # noqa: E402
from training.lora import train_adapter  # noqa: E402
from training.recipe import Recipe  # noqa: E402

PRECISIONS = ("float32", "bf16")


def training_examples(corpora: list[str], held: dict[str, list[dict]], per_corpus: int) -> list[Example]:
    """A seeded ``per_corpus`` of each corpus's reports, none of them held out for drafting, nor
    with the findings of one (the corpora repeat texts under other ids)."""
    out = []
    for corpus in corpora:
        skip = {str(r["id"]) for r in held[corpus]}
        seen = {same_text(r["findings"]) for r in held[corpus]}
        rows = [r for r in reports(corpus, 10**9) if str(r["id"]) not in skip and same_text(r["findings"]) not in seen]
        random.Random(42).shuffle(rows)
        out += [Example(corpus, str(r["id"]), "", LANGUAGES[corpus], r["findings"], r["impression"])
                for r in rows[:per_corpus]]
    return out


def refit(model_dir: Path, examples: list[Example], recipe: Recipe, work: Path) -> dict:
    results = {}
    for precision in PRECISIONS:
        r = dataclasses.replace(recipe, cpu_bf16=precision == "bf16")
        result = train_adapter(model_dir, examples, r, r.templates[0], work / precision / "final", SHARED, precision,
                               work / precision / "work", device="cpu", progress=False)
        results[precision] = result
        print(f"  refit {precision}: {result.steps} steps in {result.seconds:.0f} s, last loss {result.final_loss:.3f}",
              flush=True)
    return results


def draft(model_dir: Path, trained: dict, held: dict[str, list[dict]], batch: int, new_tokens: int) -> list[dict]:
    drafter = ModelDrafter(load_model(model_dir, "cpu"), max_new_tokens=new_tokens)
    drafter.set_adapters({p: trained[p].adapter for p in PRECISIONS})
    out = []
    for corpus, rows in held.items():
        language = LANGUAGES[corpus]
        texts: dict[str, list[str]] = {p: [] for p in PRECISIONS}
        for start in range(0, len(rows), batch):
            for precision in PRECISIONS:  # in turn, batch by batch
                texts[precision] += [d.text for d in drafter.draft(
                    [DraftRequest(corpus, str(r["id"]), r["findings"], language, precision)
                     for r in rows[start : start + batch]])]
        per = {p: [rouge.score(t, r["impression"], language).rougeL for t, r in zip(texts[p], rows)]
               for p in PRECISIONS}
        out.append({"corpus": corpus, "reports": len(rows),
                    **{f"rougeL_{p}": statistics.mean(per[p]) for p in PRECISIONS},
                    "delta": statistics.mean(per["bf16"]) - statistics.mean(per["float32"]),
                    "p": approximate_randomisation(per["bf16"], per["float32"], 5000),
                    "identical": sum(a == b for a, b in zip(texts["bf16"], texts["float32"])) / len(rows)})
        print(f"  drafted {corpus}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a Hugging Face model directory (e.g. a pulled base)")
    parser.add_argument("--recipe", default="smollm2-cpu")
    parser.add_argument("--train-per-corpus", type=int, default=80)
    parser.add_argument("--reports", type=int, default=100, help="held-out reports drafted per corpus")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--corpora", default=",".join(LANGUAGES))
    parser.add_argument("--work", type=Path, default=Path("bench-bf16"), help="the two adapters go here")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not REPORTS.is_dir():
        sys.exit(f"{REPORTS} is missing: this benchmark trains and drafts real reports")
    import torch

    started = time.time()
    corpora = args.corpora.split(",")
    recipe = Recipe.load(args.recipe)
    held = {c: reports(c, args.reports) for c in corpora}
    examples = training_examples(corpora, held, args.train_per_corpus)
    trained = refit(args.model, examples, recipe, args.work)
    drafted = draft(args.model, trained, held, args.batch, recipe.max_new_tokens)

    f32, bf = trained["float32"], trained["bf16"]
    print(f"\n{args.model.name}, recipe {args.recipe}, {torch.get_num_threads()} threads, {len(examples)} training "
          f"examples, {args.reports} held-out reports a corpus, {recipe.max_new_tokens} new tokens\n")
    print("| refit | steps | s | tokens/s | ratio | last loss |")
    print("|---|---:|---:|---:|---:|---:|")
    for precision, result in trained.items():
        print(f"| {precision} | {result.steps} | {result.seconds:.0f} | {result.train_tokens / result.seconds:.1f} | "
              f"{f32.seconds / result.seconds:.2f}x | {result.final_loss:.3f} |")
    print("\n| corpus | reports | R-L float32 | R-L bf16 | delta (p) | identical |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in drafted:
        print(f"| {r['corpus']} | {r['reports']} | {r['rougeL_float32']:.4f} | {r['rougeL_bf16']:.4f} | "
              f"{r['delta']:+.4f} (p={r['p']:.3f}) | {r['identical']:.0%} |")
    verdict = all(abs(r["delta"]) <= 0.005 for r in drafted)
    print(f"\nbf16 within ±0.005 R-L on every corpus: {'yes' if verdict else 'no'}; "
          f"{time.time() - started:.0f} s in all (bf16 refit {f32.seconds / bf.seconds:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps({"refits": {p: {"steps": t.steps, "seconds": t.seconds, "tokens": t.train_tokens,
                                                        "loss": t.final_loss} for p, t in trained.items()},
                                         "drafting": drafted, "args": {k: str(v) for k, v in vars(args).items()}},
                                        indent=2))


if __name__ == "__main__":
    main()
