"""LoRA adapters on disk: ``<adapter dir>/<name>/<version>/``, where the name is ``shared`` or an
institution (MSH-4). Each version keeps the prompt template it was trained with, so it is never
served with another. Which version serves is not decided here: the champion alias lives in
storage (``AdapterRow.status``, set by ``training.refit`` through ``storage.repository``), old
versions stay on disk for rollback.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel.errors import ModelError

ADAPTER_META = "radflow_adapter.json"
SHARED = "shared"
BASE = "__base__"  # peft's name for "no adapter" in a mixed batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdapterSpec:
    name: str  # "shared" or an institution
    version: str  # "v0003"
    path: Path
    template_family: str  # "1".."5": zh-N / en-N

    @property
    def label(self) -> str:
        """What drafts record as their adapter version."""
        return f"{self.name}/{self.version}"

    @property
    def slot(self) -> str:
        """The adapter's name inside the peft model (letters, digits and underscores only)."""
        return "a_" + re.sub(r"\W", "_", self.label)


def read_spec(path: Path) -> AdapterSpec:
    meta_path = Path(path) / ADAPTER_META
    if not meta_path.is_file():
        raise ModelError(f"{path} is not a radflow adapter (no {ADAPTER_META})")
    meta = json.loads(meta_path.read_text())
    return AdapterSpec(meta["name"], meta["version"], Path(path), str(meta["template_family"]))


def write_meta(path: Path, name: str, version: str, template_family: str, **extra: object) -> AdapterSpec:
    meta = {"name": name, "version": version, "template_family": template_family, "created_at": time.time(), **extra}
    (path / ADAPTER_META).write_text(json.dumps(meta, indent=2, ensure_ascii=False))
    return AdapterSpec(name, version, path, template_family)


def next_version(adapter_dir: Path, name: str) -> str:
    taken = [int(p.name[1:]) for p in (adapter_dir / name).glob("v[0-9]*") if p.name[1:].isdigit()]
    return f"v{max(taken, default=0) + 1:04d}"


def serving_specs(champions: Mapping[str, Any]) -> dict[str, AdapterSpec]:
    """The champion rows of storage (name -> row with ``path`` and ``version``) as adapters to
    serve; one whose files are gone is skipped, loudly, so its reports fall back as routed."""
    out = {}
    for name, row in champions.items():
        try:
            out[name] = read_spec(Path(row.path))
        except ModelError as exc:
            log.error("champion adapter %s/%s cannot be served: %s", name, row.version, exc)
    return out


def route(institution: str, serving: dict[str, AdapterSpec]) -> AdapterSpec | None:
    """The adapter for a report: its institution's, else the shared one, else none (the base)."""
    return serving.get(institution) or serving.get(SHARED)
