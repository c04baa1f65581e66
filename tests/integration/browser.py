"""What a person sees: pages rendered by headless Chromium (the Debian package; browser downloads
by test tools cannot work here), read back as the rendered DOM or as screen pixels."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--user-data-dir=/tmp/radflow-chromium"]


def chromium_or_skip() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed (Debian package chromium); the dashboard was checked by HTTP only")
    return found


def rendered_dom(chromium: str, url: str) -> str:
    proc = subprocess.run([chromium, *FLAGS, "--dump-dom", url], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def screenshot(chromium: str, url: str, out: Path, size: tuple[int, int] = (1400, 1200)) -> Path:
    proc = subprocess.run([chromium, *FLAGS, f"--window-size={size[0]},{size[1]}", f"--screenshot={out}", url],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and out.exists(), proc.stderr[-2000:]
    return out


def count_colour(png: Path, *colours: tuple[int, int, int] | str, tolerance: int = 12) -> int:
    """Pixels of about one of these colours, RGB or CSS "#rgb"/"#rrggbb" (Pillow comes with
    matplotlib, which the evaluation plots with)."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    hit = np.zeros(pixels.shape[:2], dtype=bool)
    for colour in colours:
        rgb = _rgb(colour) if isinstance(colour, str) else colour
        hit |= (np.abs(pixels - np.array(rgb, dtype=np.int16)) <= tolerance).all(axis=-1)
    return int(hit.sum())


def _rgb(css: str) -> tuple[int, int, int]:
    digits = css.lstrip("#")
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    r, g, b = (int(digits[i:i + 2], 16) for i in (0, 2, 4))
    return r, g, b
