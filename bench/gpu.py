"""GPU benchmark: drafting and refit on CUDA, plain HF against radflow's serving path, one run.

Drafting: the same left-padded prompts (random token ids, lengths between 3/4 and all of
``--prompt-tokens``) drafted by plain ``generate`` and by radflow's paths (``RADFLOW_DECODE``:
``static`` = static KV cache + torch.compile, ``greedy`` = radflow's loop), for nf4 and bf16, at
each batch size. Per-institution LoRA adapters (random, non-zero) are loaded and mixed in every
batch, with base-model rows among them, as the draft agent serves them. Reported: seconds a call
(median of ``--repeats``), p50 ms a draft, drafts/s, tokens/s, ratio to ``hf`` and the share of
drafts identical to ``hf``'s.

Refit: QLoRA on the same shape through training/lora.py (``load_base_for_training``: nf4 +
``prepare_model_for_kbit_training``, gradient checkpointing, bf16 autocast), LoRA r=64 on the
paper's modules: tokens/s and peak memory, with HF's full-vocabulary loss (``plain``) against
radflow's impression-only loss.

The model is a 7B Llama shape with random weights (built from a config, nothing downloaded)
unless ``--model`` names a local checkpoint. nf4 needs bitsandbytes; without it the nf4 rows
run in bf16, are labelled so, and the script prints the wheel to carry. ``--smoke`` runs the
same code on CPU with a tiny config (the unit suite does, and checks the JSON).

Usage: python bench/gpu.py [--smoke] [--model DIR] [--json bench/results/gpu.json]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gpu_models import ADAPTERS, LLAMA_7B, TINY, load, prompts, random_checkpoint, with_adapters  # noqa: E402
from model.serving import Decoder  # noqa: E402
from training.lora import impression_loss, load_base_for_training  # noqa: E402
from training.recipe import Recipe  # noqa: E402

BNB_HINT = ("bitsandbytes is not installed, so nf4 cannot load and those rows run in bf16 (labelled "
            "'bf16 (no bitsandbytes)'). To measure nf4 on a machine without the package index, carry its "
            "wheel: `pip download --no-deps --only-binary=:all: -d wheels bitsandbytes` where pip works "
            "(wheels/ is git-ignored), then on the GPU machine `pip install --no-index --no-deps "
            "--target /tmp/site wheels/*.whl` and PYTHONPATH=/tmp/site; bench/README.md has the command.")


def bench_drafting(model: Any, label: str, paths: list[str], batches: list[int], args: argparse.Namespace,
                   device: str, vocab: int) -> list[dict]:
    import torch

    rows = []
    for batch in batches:
        enc = prompts(batch, args.prompt_tokens, vocab, device)
        names = [(ADAPTERS + ("__base__",))[i % (len(ADAPTERS) + 1)] for i in range(batch)]
        outputs: dict[str, Any] = {}
        seconds: dict[str, float] = {}
        for path in ["hf", *paths]:
            decoder = Decoder(path)
            try:
                times = []
                for _ in range(args.repeats + 1):  # the first call warms up (and compiles, for static)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    began = time.perf_counter()
                    with torch.inference_mode():
                        out = decoder.generate(model, enc, max_new_tokens=args.new_tokens, eos_token_id=2,
                                               pad_token_id=0, adapter_names=names)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - began)
                outputs[path], seconds[path] = out, statistics.median(times[1:])
                error = ""
            except Exception as exc:  # one failing path must not lose the other rows of a GPU run
                error = f"{type(exc).__name__}: {exc}"[:300]
            row = {"quant": label, "batch": batch, "path": path, "error": error}
            if not error:
                out = outputs[path]
                row.update(seconds_per_call=seconds[path], p50_ms_per_draft=1000 * seconds[path] / batch,
                           drafts_per_s=batch / seconds[path], new_tokens=int(out.shape[1]),
                           tokens_per_s=batch * out.shape[1] / seconds[path])
                if "hf" in outputs:
                    ref = outputs["hf"]
                    width = min(ref.shape[1], out.shape[1])
                    row["ratio_vs_hf"] = seconds["hf"] / seconds[path]
                    row["identical_to_hf"] = float((ref[:, :width] == out[:, :width]).all(dim=1).float().mean())
            rows.append(row)
            print(f"  {label} batch {batch} {path}: " + (error or f"{seconds[path]:.3f} s/call"), flush=True)
    return rows


def bench_refit(path: Path, device: str, args: argparse.Namespace, recipe: Recipe) -> list[dict]:
    import torch
    from peft import LoraConfig, get_peft_model

    loaded = load_base_for_training(path, device)
    label = "nf4" if loaded.quantized else ("bf16 (no bitsandbytes)" if device == "cuda" else "float32 on CPU")
    model = get_peft_model(loaded.model, LoraConfig(r=recipe.r, lora_alpha=recipe.alpha,
                                                    lora_dropout=recipe.dropout,
                                                    target_modules=list(recipe.target_modules),
                                                    task_type="CAUSAL_LM"))
    if device == "cuda":
        model.gradient_checkpointing_enable()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe.lr)
    vocab = model.get_base_model().config.vocab_size
    gen = torch.Generator().manual_seed(7)
    ids = torch.randint(4, vocab, (args.refit_batch, args.refit_length), generator=gen).to(device)
    mask = torch.ones_like(ids)
    labels = ids.clone()
    labels[:, : args.refit_length * 3 // 4] = -100  # the impression is the last quarter of a row

    def plain() -> Any:
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss

    def radflow() -> Any:
        return impression_loss(model, ids, mask, labels)

    rows = []
    for name, loss_fn in (("plain", plain), ("radflow", radflow)):
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.refit_steps + 1):  # the first step warms up
            began = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
                loss = loss_fn()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - began)
        step_s = statistics.median(times[1:])
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
        rows.append({"quant": label, "variant": name, "batch": args.refit_batch, "length": args.refit_length,
                     "seconds_per_step": step_s, "tokens_per_s": ids.numel() / step_s, "peak_gib": peak,
                     "loss": loss.detach().item()})
        print(f"  refit {label} {name}: {ids.numel() / step_s:.0f} tokens/s", flush=True)
    for row in rows:
        row["ratio_vs_plain"] = row["tokens_per_s"] / rows[0]["tokens_per_s"]
    return rows


def print_table(result: dict) -> None:
    print("\n| quant | batch | path | s/call | ms/draft | drafts/s | tokens/s | vs hf | identical |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in result["drafting"]:
        if r["error"]:
            print(f"| {r['quant']} | {r['batch']} | {r['path']} | failed: {r['error'][:60]} | | | | | |")
            continue
        print(f"| {r['quant']} | {r['batch']} | {r['path']} | {r['seconds_per_call']:.3f} | {r['p50_ms_per_draft']:.0f} | "
              f"{r['drafts_per_s']:.2f} | {r['tokens_per_s']:.1f} | {r.get('ratio_vs_hf', 0):.2f}x | "
              f"{r.get('identical_to_hf', 0):.0%} |")
    print("\n| refit | loss | batch x length | s/step | tokens/s | vs plain | peak GiB |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in result["refit"]:
        peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "-"
        print(f"| {r['quant']} | {r['variant']} | {r['batch']} x {r['length']} | {r['seconds_per_step']:.3f} | "
              f"{r['tokens_per_s']:.0f} | {r['ratio_vs_plain']:.2f}x | {peak} |")
    for note in result["notes"]:
        print(f"\nnote: {note}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="the same code on CPU with a tiny config")
    parser.add_argument("--model", type=Path, help="a local checkpoint (default: 7B Llama shape, random weights)")
    parser.add_argument("--quants", default="nf4,bf16")
    parser.add_argument("--paths", default="static,greedy", help="RADFLOW_DECODE paths measured against hf")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--prompt-tokens", type=int, default=300)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--refit-batch", type=int, default=8)
    parser.add_argument("--refit-length", type=int, default=512)
    parser.add_argument("--refit-steps", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "gpu.json")
    args = parser.parse_args(argv)
    import torch

    if args.smoke:
        args.prompt_tokens, args.new_tokens, args.repeats = 24, 8, 1
        args.refit_batch, args.refit_length, args.refit_steps = 2, 32, 1
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    threads = torch.get_num_threads()
    if args.smoke:
        torch.set_num_threads(1)  # a tiny model gains nothing from more, and a shared CI machine loses
    try:
        return run(args, device)
    finally:
        torch.set_num_threads(threads)


def run(args: argparse.Namespace, device: str) -> dict:
    import torch

    if device == "cpu" and not args.smoke:
        sys.exit("no CUDA device: run on a GPU machine, or pass --smoke to run the same code on CPU")
    notes = []
    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    if device == "cuda" and "nf4" in args.quants and not has_bnb:
        notes.append(BNB_HINT)
        print(f"note: {BNB_HINT}", flush=True)
    recipe = Recipe.load("paper")
    result: dict[str, Any] = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                              "smoke": args.smoke, "bitsandbytes": has_bnb, "torch": torch.__version__,
                              "args": {k: str(v) for k, v in vars(args).items()}, "drafting": [], "refit": [],
                              "notes": notes}
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or random_checkpoint(TINY if args.smoke else LLAMA_7B, Path(tmp) / "llama", device)
        for quant in args.quants.split(","):
            model, label = load(path, quant, device)
            vocab = model.config.vocab_size
            model = with_adapters(model, recipe)
            result["drafting"] += bench_drafting(model, label, args.paths.split(","),
                                                 [int(b) for b in args.batches.split(",")], args, device, vocab)
            del model
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
        result["refit"] = bench_refit(path, device, args, recipe)
    result["seconds"] = time.time() - started
    print_table(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.json} ({result['seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
