"""The loss curve as a PNG image for a model card, drawn without a plotting library.

    png = loss_curve_png([(1, 2.3), (2, 2.1), ...], eval_points=[(10, 2.2)])
    Path("loss.png").write_bytes(png)

matplotlib and Pillow are not dependencies of tui-tuner, and a card needs one small line chart:
an RGB raster drawn here (grid, axes, tick labels in a 3x5 pixel font, the training loss as a
line, the eval loss as marked points) and encoded as PNG with zlib (filter 0 on every row).
"""

from __future__ import annotations

import math
import struct
import zlib

WIDTH, HEIGHT = 720, 360
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 36, 44
WHITE, GRID, AXIS, TEXT = (255, 255, 255), (228, 228, 228), (90, 90, 90), (50, 50, 50)
TRAIN_COLOUR, EVAL_COLOUR = (31, 119, 180), (230, 110, 20)

_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", ".": "000000000000010", "-": "000000111000000",
    "+": "000010111010000", " ": "000000000000000", "A": "010101111101101", "E": "111100110100111",
    "I": "111010010010111", "L": "100100100100111", "N": "110101101101101", "O": "010101101101010",
    "P": "110101110100100", "R": "110101110101101", "S": "011100010001110", "T": "111010010010010",
    "V": "101101101101010",
}
"""A 3x5 pixel font: the characters of numbers and of the chart's few words (rows top to bottom)."""


def png_bytes(pixels: list[bytearray], width: int, height: int) -> bytes:
    """Encode RGB rows (each `3 * width` bytes) as a PNG file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(row) for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


class _Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.rows = [bytearray(WHITE * width) for _ in range(height)]

    def dot(self, x: int, y: int, colour: tuple[int, int, int]) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            self.rows[y][3 * x: 3 * x + 3] = bytes(colour)

    def rect(self, x0: int, y0: int, x1: int, y1: int, colour: tuple[int, int, int]) -> None:
        for y in range(max(0, y0), min(self.height, y1 + 1)):
            for x in range(max(0, x0), min(self.width, x1 + 1)):
                self.rows[y][3 * x: 3 * x + 3] = bytes(colour)

    def line(self, x0: int, y0: int, x1: int, y1: int, colour: tuple[int, int, int], thick: int = 1) -> None:
        """Bresenham's line, `thick` pixels wide."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            self.rect(x0, y0, x0 + thick - 1, y0 + thick - 1, colour)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, x: int, y: int, text: str, colour: tuple[int, int, int] = TEXT, scale: int = 2) -> None:
        for n, char in enumerate(text.upper()):
            glyph = _GLYPHS.get(char, _GLYPHS[" "])
            for i, bit in enumerate(glyph):
                if bit == "1":
                    gx, gy = x + (n * 4 + i % 3) * scale, y + (i // 3) * scale
                    self.rect(gx, gy, gx + scale - 1, gy + scale - 1, colour)

    @staticmethod
    def text_width(text: str, scale: int = 2) -> int:
        return max(0, len(text) * 4 - 1) * scale


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    span = high - low or abs(high) or 1.0
    raw = span / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    ticks = [round(n * step, 12) for n in range(first, max(last, first + 1) + 1)]
    return ticks


def _label(value: float) -> str:
    text = f"{value:.4g}"
    return text.replace("e-0", "e-").replace("e+0", "e+")


def loss_curve_png(train: list[tuple[int, float]], eval_points: list[tuple[int, float]] | None = None,
                   *, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """A PNG line chart of the training loss by step, with the eval loss as marked points.

    Non-finite values are left out. Raises ValueError when there is no finite point to draw.
    """
    train = [(int(s), float(v)) for s, v in train if math.isfinite(float(v))]
    evals = [(int(s), float(v)) for s, v in (eval_points or []) if math.isfinite(float(v))]
    points = train + evals
    if not points:
        raise ValueError("no finite loss value to draw")
    canvas = _Canvas(width, height)
    x_low, x_high = min(s for s, _ in points), max(s for s, _ in points)
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    y_ticks = _ticks(min(v for _, v in points), max(v for _, v in points))
    y_low, y_high = y_ticks[0], y_ticks[-1]
    if y_high == y_low:
        y_low, y_high = y_low - 1, y_high + 1
    x_ticks = [t for t in _ticks(x_low, x_high, 6) if x_low <= t <= x_high]
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM

    def px(step: float) -> int:
        return LEFT + round((step - x_low) / (x_high - x_low) * (plot_w - 1))

    def py(value: float) -> int:
        return TOP + round((y_high - value) / (y_high - y_low) * (plot_h - 1))

    for t in y_ticks:
        canvas.line(LEFT, py(t), LEFT + plot_w - 1, py(t), GRID)
        label = _label(t)
        canvas.text(LEFT - 8 - canvas.text_width(label), py(t) - 5, label)
    for t in x_ticks:
        canvas.line(px(t), TOP, px(t), TOP + plot_h - 1, GRID)
        label = str(int(t)) if float(t).is_integer() else _label(t)
        canvas.text(px(t) - canvas.text_width(label) // 2, TOP + plot_h + 8, label)
    canvas.line(LEFT, TOP, LEFT, TOP + plot_h - 1, AXIS)
    canvas.line(LEFT, TOP + plot_h - 1, LEFT + plot_w - 1, TOP + plot_h - 1, AXIS)
    canvas.text(LEFT + plot_w - canvas.text_width("STEP"), height - 14, "STEP")

    for (s0, v0), (s1, v1) in zip(train, train[1:]):
        canvas.line(px(s0), py(v0), px(s1), py(v1), TRAIN_COLOUR, thick=2)
    if len(train) == 1:
        canvas.rect(px(train[0][0]) - 2, py(train[0][1]) - 2, px(train[0][0]) + 2, py(train[0][1]) + 2, TRAIN_COLOUR)
    for (s0, v0), (s1, v1) in zip(evals, evals[1:]):
        canvas.line(px(s0), py(v0), px(s1), py(v1), EVAL_COLOUR)
    for s, v in evals:
        canvas.rect(px(s) - 3, py(v) - 3, px(s) + 3, py(v) + 3, EVAL_COLOUR)

    x = LEFT
    for name, colour, present in (("TRAIN LOSS", TRAIN_COLOUR, train), ("EVAL LOSS", EVAL_COLOUR, evals)):
        if present:
            canvas.rect(x, 12, x + 14, 20, colour)
            canvas.text(x + 20, 11, name)
            x += 20 + canvas.text_width(name) + 24
    return png_bytes(canvas.rows, width, height)
