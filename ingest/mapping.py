"""Per-institution field mapping: which OBX carry findings and impression, extra boilerplate,
and exam codes with their body system. One small YAML file per institution, e.g.

    # mappings/XIHE.yaml (file name = MSH-4 sending facility)
    findings_ids: [YXSJ, 影像所见]
    impression_ids: [ZDYJ, 诊断意见]
    boilerplate: [本报告仅供参考]
    body_systems: {CT0101: chest, MR0301: musculoskeletal}

Lists add to the defaults, so a file only says what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ingest.clean import DEFAULT_BOILERPLATE
from kernel.codes import BODY_SYSTEMS
from kernel.errors import IngestError


@dataclass(frozen=True)
class FieldMapping:
    """Where an institution puts findings and impression (identifiers are matched case-blind)."""

    findings_ids: frozenset[str] = frozenset(
        {"18782-3", "59776-5", "FINDINGS", "FINDING", "影像所见", "检查所见", "所见", "描述", "影像表现"}
    )
    impression_ids: frozenset[str] = frozenset(
        {"19005-8", "IMPRESSION", "CONCLUSION", "诊断意见", "影像诊断", "诊断", "印象", "结论", "意见"}
    )
    boilerplate: tuple[str, ...] = DEFAULT_BOILERPLATE
    body_systems: dict[str, str] = field(default_factory=dict)  # OBR-4 code -> body system

    def __post_init__(self) -> None:
        # upper-cased once here, so matching an OBX costs one set intersection
        object.__setattr__(self, "findings_ids", frozenset(i.upper() for i in self.findings_ids))
        object.__setattr__(self, "impression_ids", frozenset(i.upper() for i in self.impression_ids))


DEFAULT_MAPPING = FieldMapping()

_KEYS = {"findings_ids", "impression_ids", "boilerplate", "body_systems"}


def load_mapping(path: Path, base: FieldMapping = DEFAULT_MAPPING) -> FieldMapping:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise IngestError(f"mapping {path} cannot be read: {exc}") from exc
    if not isinstance(data, dict) or set(data) - _KEYS:
        unknown = sorted(set(data) - _KEYS) if isinstance(data, dict) else ["(not a mapping)"]
        raise IngestError(f"mapping {path}: unknown keys {unknown}; expected {sorted(_KEYS)}")
    systems = {str(k): str(v) for k, v in (data.get("body_systems") or {}).items()}
    bad = sorted(v for v in systems.values() if v not in BODY_SYSTEMS)
    if bad:
        raise IngestError(f"mapping {path}: unknown body systems {bad}; expected one of {BODY_SYSTEMS}")
    return replace(
        base,
        findings_ids=base.findings_ids | frozenset(map(str, data.get("findings_ids") or [])),
        impression_ids=base.impression_ids | frozenset(map(str, data.get("impression_ids") or [])),
        boilerplate=base.boilerplate + tuple(map(str, data.get("boilerplate") or [])),
        body_systems={**base.body_systems, **systems},
    )


def load_mappings(directory: Path | None) -> dict[str, FieldMapping]:
    """Every ``<INSTITUTION>.yaml`` in ``directory`` (RADFLOW_MAPPINGS_DIR)."""
    if directory is None:
        return {}
    if not directory.is_dir():
        raise IngestError(f"RADFLOW_MAPPINGS_DIR={directory} is not a directory")
    return {p.stem: load_mapping(p) for p in sorted(directory.glob("*.y*ml"))}
