"""Desktop notifications through the terminal: OSC 9 (iTerm2, Windows Terminal, kitty, WezTerm, foot,
ghostty) and OSC 777 (rxvt-unicode, VTE/GNOME Terminal, Konsole); many terminals forward them over
SSH, and tmux passes them on when its `allow-passthrough` option is on. No textual here.
"""

from __future__ import annotations

import os
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _clean(text: str, limit: int = 200) -> str:
    return _CONTROL.sub(" ", text)[:limit]


def notification_sequences(title: str, body: str, *, tmux: bool | None = None) -> str:
    """The escape sequences that ask the terminal to show `title` / `body` as a desktop notification.

    Inside tmux (`$TMUX` set, or `tmux=True`) each is wrapped in tmux's passthrough so it reaches
    the outer terminal.
    """
    title, body = _clean(title).replace(";", ","), _clean(body)
    sequences = [f"\x1b]9;{title}: {body}\x07", f"\x1b]777;notify;{title};{body}\x07"]
    if tmux if tmux is not None else bool(os.environ.get("TMUX")):
        sequences = ["\x1bPtmux;" + s.replace("\x1b", "\x1b\x1b") + "\x1b\\" for s in sequences]
    return "".join(sequences)
