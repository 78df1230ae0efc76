#!/usr/bin/env python3
"""Draws the web app's PNG icons (www/icons/icon-192.png, icon-512.png; PWA manifest) without an
image library: a palette — white disc with three paint dots — on the theme colour, full-bleed so the
icons also serve as maskable. Run once after changing the design; the PNGs are committed."""
import struct
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BG, WHITE = (0x3B, 0x3B, 0x98), (0xFF, 0xFF, 0xFF)
DOTS = [((0.38, 0.40), (0xE8, 0x5D, 0x75)), ((0.60, 0.36), (0xF2, 0xB1, 0x34)), ((0.62, 0.58), (0x2E, 0xA4, 0x7D))]


def pixel(x, y):
    dx, dy = x - 0.5, y - 0.5
    if dx * dx + dy * dy > 0.30 ** 2:
        return BG
    for (cx, cy), col in DOTS:
        if (x - cx) ** 2 + (y - cy) ** 2 < 0.075 ** 2:
            return col
    if (x - 0.42) ** 2 + (y - 0.64) ** 2 < 0.06 ** 2:  # the palette's thumb hole
        return BG
    return WHITE


def png(size):
    rows = b"".join(b"\0" + bytes(c for x in range(size) for c in pixel((x + 0.5) / size, (y + 0.5) / size)) for y in range(size))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


if __name__ == "__main__":
    for n in (192, 512):
        (ROOT / f"www/icons/icon-{n}.png").write_bytes(png(n))
        print(f"www/icons/icon-{n}.png")
