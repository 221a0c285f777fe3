#!/usr/bin/env python3
"""Draws assets/test-scene.png: a 256x256 RGB test scene for the image-filter example.

Deterministic (no randomness beyond a fixed-seed LCG), standard library only. Run from the
repository root: python3 assets/make_test_scene.py. The pixels are the same on every machine;
the compressed bytes depend on the zlib version.
"""
import math
import struct
import zlib

W = H = 256
SS = 4  # supersamples per axis for anti-aliased shape edges


def background(x, y):
    # A diagonal colour gradient: smooth, so edge filters leave it nearly black.
    t = (x + y) / (W + H)
    return (40 + 150 * t, 70 + 110 * (x / W), 150 - 90 * t)


def shapes(x, y):
    """The colour of the topmost shape covering the point (x, y), or None."""
    # Vertical stripes whose period shrinks from 16 to 2 pixels (top band).
    if 8 <= y < 56 and 8 <= x < 248:
        period = 16 - 14 * (x - 8) / 240
        return (235, 235, 235) if math.fmod(x - 8, period) < period / 2 else (20, 20, 20)
    # A red disc.
    if (x - 64) ** 2 + (y - 120) ** 2 < 40 ** 2:
        return (220, 40, 40)
    # A green ring.
    r = math.hypot(x - 64, y - 208)
    if 22 < r < 34:
        return (40, 200, 80)
    # A blue rectangle (upright sides: what the vertical-edge kernel sees).
    if 120 <= x < 200 and 80 <= y < 140:
        return (40, 60, 210)
    # A yellow triangle (diagonal sides).
    if 160 <= y < 240:
        half = (y - 160) / 80 * 40
        if abs(x - 150) < half:
            return (240, 220, 50)
    # A checkerboard of 8-pixel squares.
    if 206 <= x < 246 and 150 <= y < 190:
        return (250, 250, 250) if ((int(x - 206) // 8 + int(y - 150) // 8) % 2) else (10, 10, 10)
    return None


def lcg(seed):
    while True:
        seed = (1103515245 * seed + 12345) % 2**31
        yield seed / 2**31


def main():
    noise = lcg(2024)
    rows = []
    for y in range(H):
        row = bytearray()
        for x in range(W):
            acc = [0.0, 0.0, 0.0]
            for sy in range(SS):
                for sx in range(SS):
                    px, py = x + (sx + 0.5) / SS, y + (sy + 0.5) / SS
                    c = shapes(px, py) or background(px, py)
                    for k in range(3):
                        acc[k] += c[k]
            c = [a / (SS * SS) for a in acc]
            # A patch of fixed pseudo-random noise (what blur smooths and sharpen amplifies).
            if 206 <= x < 246 and 200 <= y < 240:
                n = (next(noise) - 0.5) * 120
                c = [v + n for v in c]
            row += bytes(max(0, min(255, round(v))) for v in c)
        rows.append(bytes(row))
    # PNG: filter each row with Paeth (type 4), which suits gradients.
    def paeth(a, b, c):
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        return a if pa <= pb and pa <= pc else (b if pb <= pc else c)

    raw = bytearray()
    prev = bytes(W * 3)
    for row in rows:
        raw.append(4)
        for i in range(len(row)):
            a = row[i - 3] if i >= 3 else 0
            b = prev[i]
            c = prev[i - 3] if i >= 3 else 0
            raw.append((row[i] - paeth(a, b, c)) % 256)
        prev = row

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(bytes(raw), 9))
    png += chunk(b"IEND", b"")
    with open("assets/test-scene.png", "wb") as f:
        f.write(png)
    print(f"assets/test-scene.png: {W}x{H}, {len(png)} bytes")


if __name__ == "__main__":
    main()
