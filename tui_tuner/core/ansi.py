"""Terminal escape codes out of text meant for a file: colours and cursor moves that tracker
libraries (wandb, trackio, mlflow) print even when their output is not a terminal.

`AnsiStripper` works on a byte stream that arrives in pieces: a sequence cut in two by a
read is held back until the rest arrives, so no fragment of one ever reaches the file.
"""

from __future__ import annotations

import re

CSI = rb"\x1b\[[0-?]*[ -/]*[@-~]"
"""Colours (ESC [ 1 ; 31 m), cursor moves, erase line."""
OSC = rb"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
"""Window titles, hyperlinks: ESC ] ... ended by BEL or ST."""
STRING = rb"\x1b[PX^_][^\x1b]*\x1b\\"
"""DCS, SOS, PM and APC strings, ended by ST."""
OTHER = rb"\x1b[ -/]*[0-~]"
"""The other two- and three-byte escapes (ESC ( B, ESC 7, ESC c)."""
ESCAPE = re.compile(b"|".join((CSI, OSC, STRING, OTHER)))
# No 8-bit CSI (0x9b): in UTF-8 that byte is part of ordinary characters.
_OTHER = re.compile(OTHER)
_WHOLE = {b"[": re.compile(CSI), b"]": re.compile(OSC), **dict.fromkeys((b"P", b"X", b"^", b"_"), re.compile(STRING))}
INCOMPLETE_MAX = 4096
"""A partial sequence longer than this is not waited for (it was never going to end): passed on."""


def strip_ansi(text: str) -> str:
    """`text` without terminal escape codes."""
    return ESCAPE.sub(b"", text.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")


class AnsiStripper:
    """Feed bytes in as they come; get them back without escape codes."""

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, data: bytes) -> bytes:
        data = self.pending + data
        self.pending = b""
        cut = _unfinished(data)
        if cut is not None:
            data, self.pending = data[:cut], data[cut:]  # the rest of that sequence is still to come
        return ESCAPE.sub(b"", data)

    def flush(self) -> bytes:
        """What is held back, at the end of the stream (an unfinished sequence goes out as it is)."""
        data, self.pending = self.pending, b""
        return ESCAPE.sub(b"", data)


def _whole(tail: bytes) -> int | None:
    """The length of the complete sequence `tail` (starting with ESC) begins with, or None."""
    whole = _WHOLE.get(tail[1:2]) if len(tail) >= 2 else None
    match = (whole or _OTHER).match(tail)
    return match.end() if match else None


def _unfinished(data: bytes) -> int | None:
    """Where a sequence starts that `data` ends before finishing, or None."""
    pos = max(0, len(data) - INCOMPLETE_MAX)
    while (start := data.find(b"\x1b", pos)) >= 0:
        length = _whole(data[start:])
        if length is not None:
            pos = start + length
        elif b"\n" in data[start:] or b"\r" in data[start:]:
            pos = start + 1  # no sequence spans a line end: this one never will finish
        else:
            return start
    return None
