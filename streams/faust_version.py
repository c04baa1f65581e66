"""The faust-streaming releases the offset guard (streams/offsets.py) was verified on.

The guard patches private attributes of Faust's consumer that change between releases, so a
worker refuses to start on a release nobody has read them in."""

from __future__ import annotations

from importlib.metadata import version as installed_version

from radflow.errors import StreamsError

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
