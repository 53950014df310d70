"""The fit panel: pick a model and settings, see the memory breakdown and what to use.

Inputs: model (catalog names suggested; a hub id or local folder works too), method,
sequence length, batch, LoRA r, and the GPU to fit (this machine's, or a common card). A GPU
entry may name its backend (a Mac's Metal limit is estimated with MLX's memory terms).
Every change re-runs the estimate (`tui_tuner.fit.estimate`) in a thread worker a moment
after the last keystroke; the result comes back as `FitComputed`. "Use these settings"
posts `SettingsChosen` for the app to carry into the Config screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.timer import Timer
from textual.widgets import Button, Input, Label, Select, Static

from tui_tuner.tui.widgets.meters import bar, level_style


@dataclass(frozen=True)
class FitRequest:
    """What the user asked to fit."""

    model: str
    method: str
    seq_len: int
    batch_size: int
    lora_r: int
    vram_bytes: int
    gpu_name: str
    backend: str = "transformers"
    """The backend whose memory terms apply: mlx for a Mac's Metal limit."""


@dataclass
class FitComputed(Message):
    request: FitRequest
    estimate: Any = None
    """`tui_tuner.fit.estimate.MemoryEstimate`, or None with `error`."""
    recommendation: Any = None
    error: str | None = None


@dataclass
class SettingsChosen(Message):
    """Carry these config values (dotted path tuple -> value) into the Config screen."""

    values: dict[tuple[str, ...], Any]


def mlx_note(rec: Any) -> str:
    """What LoRA vs QLoRA means on MLX, for the recommended method."""
    if rec.recommended is not None and rec.recommended.method == "lora":
        return "MLX: LoRA trains over the 16-bit model; QLoRA would quantize it to 4-bit affine to free memory."
    return ("MLX: QLoRA quantizes the base to MLX's 4-bit affine format (group 64, a 16-bit scale and bias each: "
            "about 4.5 bits per weight; not NF4).")


def _int(text: str, default: int) -> int | None:
    text = text.strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= 1 else None


class FitPanel(Vertical):
    """Inputs, breakdown table, total against the GPU, recommendation and its reason."""

    def __init__(self, *, model: str, method: str = "lora", seq_len: int = 1024, batch_size: int = 2,
                 lora_r: int = 16, gpus: list[tuple[Any, ...]], catalog: list[str], id: str | None = None) -> None:
        """`gpus`: (label, bytes) or (label, bytes, backend) for each GPU to fit against."""
        super().__init__(id=id)
        self.initial = dict(model=model, method=method, seq_len=seq_len, batch_size=batch_size, lora_r=lora_r)
        self.gpus = gpus
        self.catalog = catalog
        self.request: FitRequest | None = None
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        init = self.initial
        with Horizontal(classes="fit-row"):
            yield Label("Model", classes="fit-label")
            yield Input(init["model"], id="fit-model", compact=True,
                        suggester=SuggestFromList(self.catalog, case_sensitive=False))
        with Horizontal(classes="fit-row"):
            yield Label("Method", classes="fit-label")
            yield Select([(m, m) for m in ("lora", "qlora", "full")], value=init["method"], allow_blank=False,
                         id="fit-method", compact=True)
            yield Label(" GPU", classes="fit-label-short")
            yield Select([(gpu[0], i) for i, gpu in enumerate(self.gpus)], value=0, allow_blank=False,
                         id="fit-gpu", compact=True)
        with Horizontal(classes="fit-row"):
            yield Label("Seq length", classes="fit-label")
            yield Input(str(init["seq_len"]), id="fit-seq", compact=True, type="integer")
            yield Label(" Batch", classes="fit-label-short")
            yield Input(str(init["batch_size"]), id="fit-batch", compact=True, type="integer")
            yield Label(" LoRA r", classes="fit-label-short")
            yield Input(str(init["lora_r"]), id="fit-r", compact=True, type="integer")
        yield Static(id="fit-total")
        yield Static(id="fit-breakdown")
        yield Static(id="fit-reason")
        yield Button("Use these settings ^g", id="fit-use", variant="primary", disabled=True)

    def on_mount(self) -> None:
        self.schedule()

    @on(Input.Changed)
    @on(Select.Changed)
    def schedule(self) -> None:
        """Re-estimate a moment after the last change."""
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(0.3, self.estimate_now)

    def current_request(self) -> FitRequest | str:
        """The request the inputs describe, or what is wrong with them."""
        model = self.query_one("#fit-model", Input).value.strip()
        if not model:
            return "type a model: a hub id, a local folder, or pick one from the catalog (suggestions as you type)"
        seq = _int(self.query_one("#fit-seq", Input).value, 1024)
        batch = _int(self.query_one("#fit-batch", Input).value, 2)
        r = _int(self.query_one("#fit-r", Input).value, 16)
        if seq is None or batch is None or r is None:
            return "sequence length, batch and r must be whole numbers of at least 1"
        name, vram, *backend = self.gpus[self.query_one("#fit-gpu", Select).value]
        method = self.query_one("#fit-method", Select).value
        return FitRequest(model, str(method), seq, batch, r, vram, name, *backend)

    def estimate_now(self) -> None:
        request = self.current_request()
        if isinstance(request, str):
            self.query_one("#fit-reason", Static).update(Text(request, style="yellow"))
            self.query_one("#fit-use", Button).disabled = True
            return
        self.request = request
        self.compute_fit(request)

    @work(thread=True, exclusive=True, group="fit", exit_on_error=False)
    def compute_fit(self, request: FitRequest) -> None:
        # Runs in a thread: a hub look-up may take a while; widgets are updated by the message.
        from tui_tuner.fit.estimate import estimate_memory, recommend
        from tui_tuner.models.spec import ModelSpecError, model_spec

        try:
            spec = model_spec(request.model)
            settings = dict(seq_len=request.seq_len, batch_size=request.batch_size, lora_r=request.lora_r)
            estimate = estimate_memory(spec, request.method, backend=request.backend, **settings)
            rec = recommend(spec, request.vram_bytes, gpu_name=request.gpu_name, backend=request.backend, **settings)
        except (ModelSpecError, ValueError) as exc:
            self.post_message(FitComputed(request, error=str(exc)))
            return
        self.post_message(FitComputed(request, estimate, rec))

    @on(FitComputed)
    def _fit_computed(self, event: FitComputed) -> None:
        event.stop()
        if event.request != self.request:
            return  # the inputs changed meanwhile
        total = self.query_one("#fit-total", Static)
        breakdown = self.query_one("#fit-breakdown", Static)
        reason = self.query_one("#fit-reason", Static)
        use = self.query_one("#fit-use", Button)
        if event.error:
            total.update("")
            breakdown.update("")
            reason.update(Text(event.error, style="red"))
            use.disabled = True
            return
        from tui_tuner.core.units import format_bytes

        est, rec, req = event.estimate, event.recommendation, event.request
        frac = est.total_bytes / req.vram_bytes if req.vram_bytes else 1.0
        fits = est.total_bytes <= req.vram_bytes
        line = Text()
        line.append(f"{req.method} needs {format_bytes(est.total_bytes)} of {format_bytes(req.vram_bytes)} ", style="bold")
        line.append(bar(frac, 16), style=level_style(frac))
        line.append("  fits" if fits else "  does not fit", style="bold green" if fits else "bold red")
        line.append(f"   trains {est.trainable_params / 1e6:,.1f}M of {est.total_params / 1e6:,.0f}M",
                    style="dim")
        total.update(line)
        table = Table(box=None, show_header=False, padding=(0, 1), expand=True)
        table.add_column("term", no_wrap=True, ratio=None)
        table.add_column("size", justify="right", no_wrap=True)
        table.add_column("why", style="dim", no_wrap=True, overflow="ellipsis", ratio=1)
        for term in est.lines:
            table.add_row(term.name, format_bytes(term.bytes), term.explanation)
        breakdown.update(table)
        self.last_fit = event
        text = Text()
        if rec.recommended is not None:
            text.append(f"Recommended: {rec.recommended.method}", style="bold green")
            text.append(f" (batch up to {rec.recommended.max_batch_size}, seq up to {rec.recommended.max_seq_len:,}). ")
        text.append(rec.reason)
        if req.backend == "mlx":
            text.append("\n" + mlx_note(rec), style="dim")
        reason.update(text)
        use.disabled = False

    def explanation(self) -> Text | None:
        """The breakdown with every "why" in full, and the recommendation: for reading at 80 columns."""
        event = getattr(self, "last_fit", None)
        if event is None or event.estimate is None:
            return None
        from tui_tuner.core.units import format_bytes

        est, rec, req = event.estimate, event.recommendation, event.request
        text = Text()
        text.append(f"{req.model}, {req.method}, seq {req.seq_len}, batch {req.batch_size}, r {req.lora_r}: "
                    f"{format_bytes(est.total_bytes)} of {format_bytes(req.vram_bytes)} ({req.gpu_name})\n\n", style="bold")
        for term in est.lines:
            text.append(f"{term.name}  {format_bytes(term.bytes)}\n", style="bold")
            text.append(f"  {term.explanation}\n")
        if rec is not None:
            text.append("\n")
            if rec.recommended is not None:
                text.append(f"Recommended: {rec.recommended.method}. ", style="bold green")
            text.append(rec.reason)
        return text

    def chosen_settings(self) -> dict[tuple[str, ...], Any] | None:
        """The config values the panel currently describes (None when they are invalid)."""
        req = self.request
        if req is None:
            return None
        return {("model", "name_or_path"): req.model, ("method",): req.method,
                ("model", "max_seq_length"): req.seq_len, ("training", "batch_size"): req.batch_size,
                ("lora", "r"): req.lora_r}

    @on(Button.Pressed, "#fit-use")
    def use_settings(self) -> None:
        values = self.chosen_settings()
        if values is not None:
            self.post_message(SettingsChosen(values))
