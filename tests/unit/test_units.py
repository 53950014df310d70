"""One byte formatter (`core.units.format_bytes`, GiB as nvidia-smi and nvitop), used everywhere."""

from __future__ import annotations

import re
from pathlib import Path

import tui_tuner
from tui_tuner.core.units import format_bytes

PACKAGE = Path(tui_tuner.__file__).parent
# A unit written right after a formatted number, or a helper that turns bytes into text.
OTHER_FORMATTER = re.compile(r"\}\s?(GB|MB|KB|TB|GiB|MiB|KiB|TiB)\b|def \w*(bytes|_gb|_mb|_gib)\w*\(.*\)\s*->\s*str")
ALLOWED = {
    "core/units.py": "the one formatter",
    "learn/memory.py": "quotes the rule of thumb's own decimal GB to explain the difference from GiB",
}


def test_format_bytes_binary_units_three_significant_digits():
    assert format_bytes(605777920) == "577.7 MiB"
    assert format_bytes(2.3 * 1024**3) == "2.30 GiB"
    assert format_bytes(24 * 1024**3) == "24.0 GiB"
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.50 KiB"
    assert format_bytes(None) == "-"


def test_no_other_byte_formatter_in_the_package():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in ALLOWED:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if OTHER_FORMATTER.search(line) and "format_bytes" not in line:
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert offenders == [], "format sizes with tui_tuner.core.units.format_bytes:\n" + "\n".join(offenders)
