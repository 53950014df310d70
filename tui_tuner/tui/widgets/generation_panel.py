"""Generation settings: temperature, top-p, max new tokens, repetition penalty, system prompt, compare."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Static, Switch

from tui_tuner.inference.chat_model import GenerationSettings

FIELDS = (
    ("temperature", "temperature", "0.7", "number", 0.0, 5.0),
    ("top_p", "top-p", "0.9", "number", 0.01, 1.0),
    ("max_new_tokens", "max tokens", "256", "integer", 1, 8192),
    ("repetition_penalty", "repeat pen.", "1.1", "number", 0.5, 3.0),
)


class GenerationPanel(Vertical):
    """Settings for the next answer; `settings()` reads them (invalid fields fall back, marked in red)."""

    def compose(self) -> ComposeResult:
        yield Static("Generation", classes="pane-title")
        for key, label, default, kind, _, _ in FIELDS:
            with Horizontal(classes="gen-row"):
                yield Label(label, classes="gen-label")
                yield Input(default, type=kind, id=f"gen-{key}", classes="gen-input")
        yield Label("system prompt", classes="gen-label-wide")
        yield Input(placeholder="(none)", id="gen-system")
        with Horizontal(classes="gen-row"):
            yield Label("base vs tuned", classes="gen-label")
            yield Switch(False, id="gen-compare")

    @property
    def compare(self) -> bool:
        return self.query_one("#gen-compare", Switch).value

    def settings(self) -> GenerationSettings:
        values = {}
        defaults = GenerationSettings()
        for key, _, _, kind, low, high in FIELDS:
            field = self.query_one(f"#gen-{key}", Input)
            try:
                value = int(field.value) if kind == "integer" else float(field.value)
                ok = low <= value <= high
            except ValueError:
                ok = False
            field.set_class(not ok, "-invalid")
            values[key] = value if ok else getattr(defaults, key)
        system = self.query_one("#gen-system", Input).value.strip()
        return GenerationSettings(system_prompt=system or None, **values)
