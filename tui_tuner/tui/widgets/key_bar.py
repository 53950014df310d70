"""The one-line key bar at the bottom of every screen: the most important keys first, never cut.

Textual's `Footer` lays every key out in a row and lets the row run off the right edge, with
the command-palette key docked over its end; at 80 columns that shows half-words ("paletter")
and hides the keys a newcomer needs. This bar orders the keys by importance — what the
focused widget and the screen offer, then quit, the screen keys, the palette — and drops
whole keys from the end when they do not fit (the screen keys first fold into "f1-f6 screens").
A click on a key presses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.app import RenderResult
from textual.widget import Widget

SCREEN_KEYS = ("f1", "f2", "f3", "f4", "f5", "f6")
"""The app's screen switches: shown one by one when there is room, else folded into one entry."""


@dataclass(frozen=True)
class KeyEntry:
    """One key as shown: what to press (`key`, simulated on click), its label and description."""

    key: str
    display: str
    description: str
    enabled: bool = True

    @property
    def width(self) -> int:
        return len(self.display) + (1 + len(self.description) if self.description else 0)


def fit_entries(local: list[KeyEntry], quit_entry: list[KeyEntry], screens: list[KeyEntry],
                palette: list[KeyEntry], width: int, gap: int = 2) -> list[KeyEntry]:
    """The entries to show in `width` cells: whole entries only, most important first.

    Shown in the order `local` (the focused widget's and the screen's keys), quit, the screen
    keys, the palette. Quit and the screen keys always keep their room (the screen keys folded
    into one "f1-f6 screens" entry when they do not all fit); local keys that do not fit are
    dropped from the end, then the palette (it lists every key anyway).
    """
    def total(entries: list[KeyEntry]) -> int:
        return sum(e.width for e in entries) + gap * max(0, len(entries) - 1)

    full = local + quit_entry + screens + palette
    if total(full) <= width:
        return full
    if screens:
        screens = [KeyEntry(screens[0].key, f"{screens[0].display}-{screens[-1].display}", "screens")]
    kept: list[KeyEntry] = []
    for entry in local:
        if total(kept + [entry] + quit_entry + screens) <= width:
            kept.append(entry)
    shown = kept + quit_entry + screens
    if palette and total(shown + palette) <= width:
        shown += palette
    return shown


class KeyBar(Widget, can_focus=False):
    """The keys of the focused widget, the screen and the app, in one line that always fits."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._spans: list[tuple[int, int, str]] = []
        """(start, end, key) of each shown entry, for clicks."""

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen) -> None:
        self.refresh()

    def entries(self) -> list[KeyEntry]:
        """The entries that fit the bar's current width."""
        local: list[KeyEntry] = []
        quit_entry: list[KeyEntry] = []
        screens: dict[str, KeyEntry] = {}
        palette: list[KeyEntry] = []
        seen_actions: set[str] = set()
        app = self.app
        active_bindings = self.screen.active_bindings
        for key, active in active_bindings.items():
            binding = active.binding
            if key == app.COMMAND_PALETTE_BINDING and app.ENABLE_COMMAND_PALETTE:
                palette = [KeyEntry(key, app.get_key_display(binding), "palette", active.enabled)]
                continue
            if not binding.show or binding.action in seen_actions:
                continue
            seen_actions.add(binding.action)
            entry = KeyEntry(key, app.get_key_display(binding), binding.description, active.enabled)
            if key in SCREEN_KEYS and active.node is app:
                screens[key] = entry
            elif binding.action == "quit" and active.node is app:
                quit_entry = [entry]
            else:
                local.append(entry)
        if not quit_entry and "ctrl+q" in active_bindings:
            # A text field takes `q` (and hides it); ctrl+q still quits from there.
            active = active_bindings["ctrl+q"]
            quit_entry = [KeyEntry("ctrl+q", app.get_key_display(active.binding), "Quit", active.enabled)]
        ordered_screens = [screens[k] for k in SCREEN_KEYS if k in screens]
        return fit_entries(local, quit_entry, ordered_screens, palette, max(0, self.size.width - 1))

    def render(self) -> RenderResult:
        key_style = self.get_component_rich_style("key-bar--key")
        text = Text(no_wrap=True, overflow="crop")
        text.append(" ")
        self._spans = []
        for n, entry in enumerate(self.entries()):
            if n:
                text.append("  ")
            start = len(text)
            text.append(entry.display, style=key_style if entry.enabled else "dim")
            if entry.description:
                text.append(" " + entry.description, style="" if entry.enabled else "dim")
            self._spans.append((start, len(text), entry.key))
        return text

    def on_click(self, event: events.Click) -> None:
        for start, end, key in self._spans:
            if start <= event.x < end:
                self.app.simulate_key(key)
                return

    COMPONENT_CLASSES = {"key-bar--key"}
