"""CPU benchmark of a pretrained base: drafting and LoRA training, plain HF against radflow, one run.

Drafting: the same reports (IU X-ray en, COV-CTR zh from ../shared/corpora/reports) drafted by
``ModelDrafter`` with each ``RADFLOW_DECODE`` path, batch by batch in turn (so the machine's load
falls on every path alike). ``hf`` is plain transformers ``generate``. Per path: drafts/s, ms a
draft, ratio to ``hf``, the share of drafts identical to ``hf``'s, and the ROUGE-L delta against
the signed impressions (path minus ``hf``).

Training: the same examples, forward and backward per micro-batch (no optimizer step, so every
variant sees the same weights), LoRA with the paper recipe's modules and rank. ``plain``: peft's model with ``labels=`` on padded batches (what HF/peft code
does); the loss on impression tokens only (training/lora.py's ``impression_loss``), on the same
padded batches and on packed rows (what lora.py trains on); and the same under CPU bf16 autocast
(a candidate, not in lora.py).
Tokens/s counts real tokens, never padding.

With ``--fewshot K`` the drafts are the day-0 few-shot drafts an instruct base serves (the K most
similar signed cases of the corpus as worked examples, from every report not drafted), and the
ROUGE-L delta gets its paired approximate-randomisation p-value: the question whether ``int8`` may
be the CPU default (|ΔR-L| ≤ 0.005 on ≥ 100 reports a corpus). ``--no-training`` skips training.

Usage: python bench/cpu_model.py --model /path/to/hf-dir [--reports 16] [--batch 8] [--new-tokens 32]
       [--corpora iu_xray_en,covctr_zh,medpix2_en] [--fewshot 3] [--no-training]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.drafter import DraftRequest, ModelDrafter  # noqa: E402
from model.loader import load_model  # noqa: E402
from model.scoring import rouge  # noqa: E402

REPORTS = ROOT.parent / "shared" / "corpora" / "reports"
CORPORA = {"iu_xray_en": "en", "covctr_zh": "zh"}
LANGUAGES = {**CORPORA, "medpix2_en": "en"}


def reports(name: str, n: int) -> list[dict]:
    rows = [json.loads(line) for line in (REPORTS / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if r["findings"].strip() and r["impression"].strip()]
    step = max(1, len(rows) // n)
    return rows[::step][:n]  # spread over the file, the same every run


def case_index(corpus: str, drafted: list[dict]) -> Any:
    """Every other report of the corpus with findings and impression, as the signed cases."""
    from model.retrieval import CaseIndex

    index, skip = CaseIndex(), {str(r["id"]) for r in drafted}
    for line in (REPORTS / f"{corpus}.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if str(r["id"]) not in skip and r["findings"].strip() and r["impression"].strip():
            index.add("BENCH", str(r["id"]), r["findings"], r["impression"])
    return index


def bench_drafting(model_dir: Path, modes: list[str], n: int, batch: int, new_tokens: int,
                   corpora: list[str] | None = None, fewshot: int = 0) -> list[dict]:
    from training.gate import approximate_randomisation

    loaded = load_model(model_dir, "cpu")
    results = []
    for corpus in corpora or list(CORPORA):
        language = LANGUAGES[corpus]
        rows = reports(corpus, n)
        index = case_index(corpus, rows) if fewshot else None
        drafters = {m: ModelDrafter(loaded, max_new_tokens=new_tokens, decode=m, retrieval=index, fewshot_k=fewshot)
                    for m in ["hf", *modes]}
        requests = [DraftRequest("BENCH", str(r["id"]), r["findings"], language) for r in rows]
        seconds = {m: 0.0 for m in drafters}
        texts: dict[str, list[str]] = {m: [] for m in drafters}
        for drafter in drafters.values():  # warm-up: first calls allocate and pack
            drafter.draft(requests[:1])
        for start in range(0, len(requests), batch):
            chunk = requests[start : start + batch]
            for mode, drafter in drafters.items():
                began = time.perf_counter()
                texts[mode] += [d.text for d in drafter.draft(chunk)]
                seconds[mode] += time.perf_counter() - began
        refs = [r["impression"] for r in rows]
        per = {m: [rouge.score(t, ref, language).rougeL for t, ref in zip(texts[m], refs)] for m in drafters}
        rl = {m: statistics.mean(per[m]) for m in drafters}
        for mode in drafters:
            results.append({
                "corpus": corpus, "mode": mode, "drafts": len(rows), "seconds": seconds[mode],
                "drafts_per_s": len(rows) / seconds[mode], "ms_per_draft": 1000 * seconds[mode] / len(rows),
                "ratio": seconds["hf"] / seconds[mode],
                "identical": sum(a == b for a, b in zip(texts[mode], texts["hf"])) / len(rows),
                "rougeL": rl[mode], "rougeL_delta": rl[mode] - rl["hf"],
                "p": approximate_randomisation(per[mode], per["hf"], 5000) if mode != "hf" else 1.0,
            })
            print(f"  drafted {corpus} {mode}: {seconds[mode]:.1f} s", flush=True)
    return results


def bench_training(model_dir: Path, n: int, max_length: int, micro_batch: int) -> list[dict]:
    import torch
    from peft import LoraConfig, get_peft_model

    from model.encoding import encode_pair
    from training.recipe import Recipe

    recipe = Recipe.load("paper")
    loaded = load_model(model_dir, "cpu")
    tok = loaded.tokenizer
    pairs = []
    for corpus, language in CORPORA.items():
        pairs += [encode_pair(tok, r["findings"], r["impression"], language, "1", max_length)
                  for r in reports(corpus, n // 2)]
    torch.manual_seed(0)
    model = get_peft_model(loaded.model, LoraConfig(r=recipe.r, lora_alpha=recipe.alpha, lora_dropout=recipe.dropout,
                                                    target_modules=list(recipe.target_modules), task_type="CAUSAL_LM"))
    model.train()
    variants = _training_variants(model, pairs, max_length)
    seconds, tokens = _time_training(model, variants, tok.pad_token_id, micro_batch)
    out = []
    for name in variants:
        out.append({"variant": name, "tokens": tokens[name], "seconds": seconds[name],
                    "tokens_per_s": tokens[name] / seconds[name],
                    "ratio": (tokens[name] / seconds[name]) / (tokens["plain"] / seconds["plain"]),
                    "rows": len(variants[name][0])})
        print(f"  trained {name}: {tokens[name]} tokens in {seconds[name]:.1f} s", flush=True)
    return out


def _training_variants(model: Any, pairs: list[Any], max_length: int) -> dict[str, tuple[list[Any], Any]]:
    """Each variant's rows (padded or packed) and loss: HF's over the full vocabulary against
    radflow's on the impression tokens only, with packing and with bf16 autocast."""
    import torch

    from model.encoding import pack, unpacked
    from training.lora import impression_loss

    def plain(ids, mask, labels):  # noqa: ANN001, ANN202
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss

    def radflow(ids, mask, labels):  # noqa: ANN001, ANN202
        return impression_loss(model, ids, mask, labels)

    def radflow_bf16(ids, mask, labels):  # noqa: ANN001, ANN202
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return impression_loss(model, ids, mask, labels)

    packed, padded = pack(pairs, max_length), unpacked(pairs)
    return {"plain": (padded, plain), "impression-only loss": (padded, radflow),
            "packed + impression-only loss (lora.py)": (packed, radflow),
            "impression-only loss + bf16 autocast": (padded, radflow_bf16)}


def _time_training(model: Any, variants: dict[str, tuple[list[Any], Any]], pad_token_id: int,
                   micro_batch: int) -> tuple[dict[str, float], dict[str, int]]:
    """Seconds and tokens of forward and backward per variant, over all its micro-batches."""
    from model.encoding import collate

    seconds = {v: 0.0 for v in variants}
    tokens = {v: 0 for v in variants}
    for rows, loss_fn in variants.values():  # warm-up on one micro-batch
        ids, labels, mask = collate(rows[:1], pad_token_id)
        loss_fn(ids, mask, labels).backward()
        model.zero_grad()
    batches = {name: [rows[i : i + micro_batch] for i in range(0, len(rows), micro_batch)]
               for name, (rows, _) in variants.items()}
    # Alternate the variants batch by batch so the shared machine's load falls on both alike.
    for k in range(max(len(b) for b in batches.values())):
        for name, (_, loss_fn) in variants.items():
            if k >= len(batches[name]):
                continue
            ids, labels, mask = collate(batches[name][k], pad_token_id)
            began = time.perf_counter()
            loss = loss_fn(ids, mask, labels)
            loss.backward()
            model.zero_grad()  # no step: both variants see the same weights throughout
            seconds[name] += time.perf_counter() - began
            tokens[name] += int(mask.sum())
    return seconds, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a Hugging Face model directory (e.g. a pulled base)")
    parser.add_argument("--modes", default="greedy,int8", help="RADFLOW_DECODE paths measured against hf")
    parser.add_argument("--reports", type=int, default=16, help="reports drafted per corpus")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--train-examples", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--corpora", default=",".join(CORPORA), help=f"drafted corpora, of {', '.join(LANGUAGES)}")
    parser.add_argument("--fewshot", type=int, default=0, help="day-0 few-shot drafts with this many similar cases")
    parser.add_argument("--no-training", action="store_true", help="drafting only")
    args = parser.parse_args()
    if not REPORTS.is_dir():
        sys.exit(f"{REPORTS} is missing: this benchmark drafts real reports")
    import torch

    started = time.time()
    drafting = bench_drafting(args.model, args.modes.split(","), args.reports, args.batch, args.new_tokens,
                              args.corpora.split(","), args.fewshot)
    training = [] if args.no_training else bench_training(args.model, args.train_examples, args.max_length,
                                                          args.micro_batch)
    print(f"\n{args.model.name}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.new_tokens} new tokens, {args.reports} reports a corpus, few-shot k={args.fewshot}\n")
    print("| corpus | decode | drafts/s | ms/draft | ratio vs hf | identical to hf | ROUGE-L | delta (p) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in drafting:
        print(f"| {r['corpus']} | {r['mode']} | {r['drafts_per_s']:.2f} | {r['ms_per_draft']:.0f} | "
              f"{r['ratio']:.2f}x | {r['identical']:.0%} | {r['rougeL']:.4f} | {r['rougeL_delta']:+.4f} "
              f"(p={r['p']:.3f}) |")
    print("\n| training | tokens | s | tokens/s | ratio vs plain |")
    print("|---|---:|---:|---:|---:|")
    for r in training:
        print(f"| {r['variant']} | {r['tokens']} | {r['seconds']:.1f} | {r['tokens_per_s']:.1f} | {r['ratio']:.2f}x |")
    print(f"\n{time.time() - started:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps({"drafting": drafting, "training": training, "args": {
            k: str(v) for k, v in vars(args).items()}}, indent=2))


if __name__ == "__main__":
    main()
