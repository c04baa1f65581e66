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
#: mode-streaming releases whose Worker._on_sigint/_on_sigterm streams/stopping.py calls: [low, high).
VERIFIED_MODE = ((0, 7, 0), (0, 8, 0))


def _check(package: str, found: str | None, verified: tuple[tuple[int, ...], tuple[int, ...]], uses: str,
           setting: str) -> str:
    """The installed ``package`` version; StreamsError outside ``verified`` [low, high)."""
    found = found or installed_version(package)
    parts = tuple(int(p) for p in found.split(".")[:3] if p.isdigit())
    low, high = verified
    if not low <= parts < high:
        raise StreamsError(
            f"{package} {found} is installed; {uses}, verified on >={'.'.join(map(str, low))},"
            f"<{'.'.join(map(str, high))}. Install a verified release, or verify this one and widen {setting}.")
    return found


def check_faust_version(found: str | None = None) -> str:
    """The installed faust-streaming version; StreamsError outside ``VERIFIED``."""
    return _check("faust-streaming", found, VERIFIED, "radflow's offset guard (streams/offsets.py) patches "
                  "private attributes that change between releases", "VERIFIED")


def check_mode_version(found: str | None = None) -> str:
    """The installed mode-streaming version; StreamsError outside ``VERIFIED_MODE``."""
    return _check("mode-streaming", found, VERIFIED_MODE, "radflow's stop (streams/stopping.py) calls its "
                  "private signal handlers", "VERIFIED_MODE")
