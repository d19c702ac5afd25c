"""Headless Debian chromium for the browser tests, and a PNG reader (standard library only).

A test that cannot start chromium fails with the reason; it never skips.
"""
import shutil
import struct
import subprocess
import zlib
from pathlib import Path


def chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(
        "FAIL: no chromium on PATH — the browser tests need Debian's chromium "
        "(apt-get install chromium; .ci/run installs it)")


BASE_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              "--force-device-scale-factor=1", "--no-first-run", "--no-default-browser-check",
              "--disable-extensions", "--disable-background-networking"]


def screenshot(url, out_png, width, height, workdir):
    """Renders `url` at width x height into out_png; raises SystemExit with chromium's words."""
    cmd = [chromium(), *BASE_FLAGS, f"--user-data-dir={workdir}/profile",
           f"--screenshot={out_png}", f"--window-size={width},{height}", url]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"FAIL: chromium did not finish within 120 s: {' '.join(cmd)}")
    if r.returncode != 0 or not Path(out_png).exists():
        raise SystemExit(f"FAIL: chromium could not render {url} (exit {r.returncode}):\n{r.stderr[-2000:]}")


def read_png(path):
    """(width, height, rows of (r, g, b) tuples) of an 8-bit RGB or RGBA, non-interlaced PNG."""
    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    pos, idat = 8, b""
    width = height = color = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or color not in (2, 6) or interlace:
                raise ValueError(f"{path}: unsupported PNG (depth {depth}, colour type {color})")
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    bpp = 4 if color == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(width)])
        prev = line
    return width, height, rows


def distance(a, b):
    """Euclidean distance between two RGB colours."""
    return sum((x - y) ** 2 for x, y in zip(a[:3], b[:3])) ** 0.5


def hex_rgb(h):
    h = h.lstrip("#")
    return tuple(int(h[i:i + 2], 16) for i in (0, 2, 4))
