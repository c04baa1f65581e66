"""The releases whose private attributes radflow uses were verified on: the version gate.

Two modules use private API, and each checks the release it runs on before touching it:
- streams/offsets.py, the offset guard, patches private attributes of faust-streaming's consumer;
- streams/stopping.py calls mode-streaming's own signal handlers (``Worker._on_sigint`` and
  ``_on_sigterm``), the graceful stop the worker falls back on after counting the signal.
They change between releases, so a worker refuses to start on a release nobody has read them in."""

from __future__ import annotations

from importlib.metadata import version as installed_version

from kernel.errors import StreamsError

#: faust-streaming releases whose private attributes streams/offsets.py uses were read and tested: [low, high).
VERIFIED = ((0, 15, 3), (0, 16, 0))


def check_faust_version(found: str | None = None) -> str:
    """The installed faust-streaming version; StreamsError outside ``VERIFIED``."""
    found = found or installed_version("faust-streaming")
    parts = tuple(int(p) for p in found.split(".")[:3] if p.isdigit())
    low, high = VERIFIED
    if not low <= parts < high:
        raise StreamsError(
            f"faust-streaming {found} is installed; radflow's offset guard (streams/offsets.py) was verified on "
            f">={'.'.join(map(str, low))},<{'.'.join(map(str, high))} and patches private attributes that "
            "change between releases. Install a verified release, or verify this one and widen VERIFIED.")
    return found


#: mode-streaming releases whose Worker._on_sigint/_on_sigterm streams/stopping.py calls: [low, high).
VERIFIED_MODE = ((0, 7, 0), (0, 8, 0))


def check_mode_version(found: str | None = None) -> str:
    """The installed mode-streaming version; StreamsError outside ``VERIFIED_MODE``."""
    found = found or installed_version("mode-streaming")
    parts = tuple(int(p) for p in found.split(".")[:3] if p.isdigit())
    low, high = VERIFIED_MODE
    if not low <= parts < high:
        raise StreamsError(
            f"mode-streaming {found} is installed; radflow's stop (streams/stopping.py) calls its private signal "
            f"handlers, verified on >={'.'.join(map(str, low))},<{'.'.join(map(str, high))}. Install a verified "
            "release, or verify this one and widen VERIFIED_MODE.")
    return found
