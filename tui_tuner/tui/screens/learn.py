"""Learn screen: the quantization lab, memory by precision and LoRA arithmetic on a real model.

Three tabs over one model (the open config's model, else the demo model; type another
folder, run or hub id at the top):

- Quantization: pick a weight matrix from the list; it is quantized with bitsandbytes
  (INT8, FP4, NF4, with and without double quant) and the histogram shows the weights
  with the 16 NF4 and FP4 levels marked, beside the error table. h switches between
  the block-normalized and the raw histogram.
- Memory: FP32 / BF16 / INT8 / NF4 weight memory, rule of thumb against exact.
- LoRA: shapes, trainable parameters and adapter size for r, alpha and target modules.

All computing happens in thread workers calling `tui_tuner.learn`; results come back as
messages. Each panel carries its two-or-three-sentence explanation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (Checkbox, DataTable, Input, Label, OptionList, Static, TabbedContent,
                             TabPane)
from textual.widgets.option_list import Option

from tui_tuner.core.units import format_bytes
from tui_tuner.tui.widgets.experiment_log_panel import ExperimentLogPanel
from tui_tuner.tui.widgets.quant_histogram import QuantHistogram
from tui_tuner.tui.widgets.key_bar import KeyBar


@dataclass
class TensorsListed(Message):
    request: str                # the model as asked for: results for an older request are dropped
    model: str
    tensors: list[Any]          # weights.TensorInfo
    default: str | None
    error: str | None = None


@dataclass
class QuantAnalyzed(Message):
    request: str
    tensor: str
    report: Any                 # quant_lab.QuantLabReport
    error: str | None = None


@dataclass
class MemoryComputed(Message):
    request: str
    report: Any                 # memory.MemoryReport
    error: str | None = None


@dataclass
class LoraComputed(Message):
    request: str
    report: Any                 # lora_math.LoraReport
    error: str | None = None


def default_model(app: Any) -> str:
    """The model of the config the app has open, else the demo model."""
    from tui_tuner.config.schema import DEMO_MODEL_ID, load_config

    path = getattr(app, "config_path", None)
    if path is not None:
        loaded = load_config(path)
        if loaded.ok and loaded.config is not None:
            return loaded.config.model.name_or_path
    return DEMO_MODEL_ID


def _short_tensor_name(name: str) -> str:
    """`model.layers.0.mlp.down_proj.weight` -> `layers.0.mlp.down_proj`: fits the list without wrapping."""
    return name.removeprefix("model.").removesuffix(".weight")


class LearnScreen(Screen):
    """The three labs over one model."""

    CSS_PATH = "learn.tcss"
    BINDINGS = [
        Binding("h", "toggle_histogram", "Raw/normalized histogram"),
        Binding("m", "focus_model", "Model"),
    ]

    def __init__(self, model: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.report = None
        self.show_raw = False

    def compose(self) -> ComposeResult:
        yield Static(Text("Learn", style="bold"), classes="screen-title", id="learn-title")
        with Horizontal(id="learn-model-bar"):
            yield Label("model ", id="learn-model-label")
            yield Input(placeholder="model folder, run, hub id or tui-tuner/demo-tiny-llama", id="learn-model")
        with TabbedContent(id="learn-tabs"):
            with TabPane("Quantization", id="tab-quant"):
                with Horizontal(id="quant-body"):
                    with Vertical(id="quant-left"):
                        yield Static("tensors (Enter; dim: kept 16-bit)", classes="pane-title")
                        yield OptionList(id="tensor-list")
                    with VerticalScroll(id="quant-right"):
                        yield Static("", id="quant-heading")
                        yield QuantHistogram(id="quant-hist")
                        yield Static("", id="quant-hist-note", classes="explain")
                        yield DataTable(id="quant-table", cursor_type="row", zebra_stripes=True)
                        yield Static("", id="quant-verdict")
                        yield Static("", id="quant-note", classes="explain")
            with TabPane("Memory", id="tab-memory"):
                with VerticalScroll():
                    yield Static("", id="memory-heading")
                    yield DataTable(id="memory-table", cursor_type="row", zebra_stripes=True)
                    yield Static("", id="memory-gap")
                    yield Static("", id="memory-note", classes="explain")
            with TabPane("LoRA", id="tab-lora"):
                with VerticalScroll():
                    with Horizontal(id="lora-form"):
                        yield Label("r")
                        yield Input("16", id="lora-r", type="integer")
                        yield Label("alpha")
                        yield Input("32", id="lora-alpha", type="number")
                        yield Label("targets")
                        yield Input("all-linear", id="lora-targets")
                        yield Checkbox("rsLoRA", id="lora-rslora")
                    yield Static("", id="lora-summary")
                    yield DataTable(id="lora-modules", cursor_type="row", zebra_stripes=True)
                    yield DataTable(id="lora-ranks", cursor_type="row", zebra_stripes=True)
                    yield Static("", id="lora-note", classes="explain")
            with TabPane("Experiments", id="tab-experiments"):
                yield ExperimentLogPanel(id="experiments")
        yield KeyBar()

    def on_mount(self) -> None:
        from tui_tuner.learn.quant_lab import EXPLANATIONS

        self.query_one("#quant-hist", QuantHistogram).clear_histogram("reading the model's tensors...")
        self.query_one("#quant-note", Static).update(EXPLANATIONS["errors"])
        self.model = self.model or default_model(self.app)
        self.query_one("#learn-model", Input).value = self.model
        self.load_model(self.model)

    # ------------------------------------------------------------------ model
    def load_model(self, model: str) -> None:
        self.model = model
        self.report = None
        self.query_one("#learn-title", Static).update(Text.assemble(("Learn  ", "bold"), model))
        self.query_one(OptionList).clear_options()
        self.list_tensors(model)
        self.compute_memory(model)
        self.compute_lora()

    @on(Input.Submitted, "#learn-model")
    def _model_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.load_model(event.value.strip())

    def action_focus_model(self) -> None:
        self.query_one("#learn-model", Input).focus()

    # ------------------------------------------------------------------ quantization
    @work(thread=True, exclusive=True, group="learn-tensors", exit_on_error=False)
    def list_tensors(self, model: str) -> None:
        from tui_tuner.learn.weights import ModelNotFound, default_tensor, list_tensors, resolve_model

        try:
            ref = resolve_model(model, self.app_runs_dir())
            tensors = list_tensors(ref.weights_dir)
            first = default_tensor(tensors).name
        except (ModelNotFound, OSError, ValueError) as exc:
            self.post_message(TensorsListed(model, model, [], None, str(exc)))
            return
        self.post_message(TensorsListed(model, ref.label, tensors, first))

    def app_runs_dir(self) -> str:
        return str(getattr(self.app, "runs_dir", "runs"))

    @on(TensorsListed)
    def _tensors_listed(self, event: TensorsListed) -> None:
        if event.request != self.model:
            return
        hist = self.query_one("#quant-hist", QuantHistogram)
        if event.error:
            hist.clear_histogram(event.error)
            return
        tensor_list = self.query_one(OptionList)
        tensor_list.clear_options()
        float_tensors = [t for t in event.tensors if t.is_float]
        tensor_list.add_options([
            Option(Text.assemble((_short_tensor_name(t.name), "" if t.qlora_quantized else "dim italic"),
                                 ("  " + "x".join(map(str, t.shape)), "dim")), id=t.name)
            for t in float_tensors])
        if event.default is not None:
            index = next((i for i, t in enumerate(float_tensors) if t.name == event.default), 0)
            tensor_list.highlighted = index
            self.analyze(event.default)

    @on(OptionList.OptionSelected, "#tensor-list")
    def _tensor_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.analyze(event.option.id)

    def analyze(self, tensor: str) -> None:
        self.query_one("#quant-heading", Static).update(Text(f"quantizing {tensor} ...", style="dim"))
        self.run_quant(self.model, tensor)

    @work(thread=True, exclusive=True, group="learn-quant", exit_on_error=False)
    def run_quant(self, model: str, tensor: str) -> None:
        from tui_tuner.learn.quant_lab import run_quant_lab
        from tui_tuner.learn.weights import ModelNotFound

        try:
            report = run_quant_lab(model, tensor, runs_dir=self.app_runs_dir())
        except (ModelNotFound, KeyError, ValueError, RuntimeError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            self.post_message(QuantAnalyzed(model, tensor, None, message))
            return
        self.post_message(QuantAnalyzed(model, tensor, report))

    @on(QuantAnalyzed)
    def _quant_analyzed(self, event: QuantAnalyzed) -> None:
        if event.request != self.model:
            return
        heading = self.query_one("#quant-heading", Static)
        if event.error:
            heading.update(Text(event.error, style="red"))
            return
        self.report = r = event.report
        shape = " x ".join(map(str, r.shape))
        s = r.stats
        heading.update(Text.assemble((r.tensor, "bold"), f"  {shape} {r.dtype}, {r.numel:,} weights, "
                                     f"std {s['std']:.3g}, absmax {s['absmax']:.3g}, kurtosis {s['kurtosis']:.2f}"))
        self._draw_histogram()
        table = self.query_one("#quant-table", DataTable)
        table.clear(columns=True)
        for col in ("format", "bytes", "bits/w", "consts", "mean |err|", "max |err|", "SNR dB"):
            table.add_column(col, key=col)
        for f in r.formats:
            best = f.key in (r.least_error, r.least_error_4bit)
            style = "bold green" if best else ""
            consts = (f.bytes_constants + f.bytes_tables) * 8 / r.numel
            snr = "exact" if f.snr_db is None else f"{f.snr_db:.1f}"
            cells = [f.short + (" ★" if best else ""), f"{f.bytes_total:,}", f"{f.bits_per_param:.2f}",
                     f"{consts:.2f}", f"{f.mean_abs_error:.3g}", f"{f.max_abs_error:.3g}", snr]
            table.add_row(*[Text(c, style=style, justify="left" if i == 0 else "right") for i, c in enumerate(cells)],
                          key=f.key)
        self.query_one("#quant-verdict", Static).update(Text.assemble(("Verdict: ", "bold"), r.verdict))

    def _draw_histogram(self) -> None:
        r = self.report
        if r is None:
            return
        hist = r.histogram if self.show_raw else r.block_histogram
        title = ("raw weights, levels scaled by the tensor's absmax" if self.show_raw
                 else "each weight / its block's absmax — what the 4-bit quantizer sees")
        self.query_one("#quant-hist", QuantHistogram).show(hist, title + "  (h: switch)")
        self.query_one("#quant-hist-note", Static).update(hist.explanation)

    def action_toggle_histogram(self) -> None:
        self.show_raw = not self.show_raw
        self._draw_histogram()

    # ------------------------------------------------------------------ memory
    @work(thread=True, exclusive=True, group="learn-memory", exit_on_error=False)
    def compute_memory(self, model: str) -> None:
        from tui_tuner.learn.layout import model_layout
        from tui_tuner.learn.memory import memory_by_precision
        from tui_tuner.learn.weights import ModelNotFound

        try:
            self.post_message(MemoryComputed(model, memory_by_precision(model_layout(model, self.app_runs_dir()))))
        except (ModelNotFound, ValueError) as exc:
            self.post_message(MemoryComputed(model, None, str(exc)))

    @on(MemoryComputed)
    def _memory_computed(self, event: MemoryComputed) -> None:
        if event.request != self.model:
            return
        heading = self.query_one("#memory-heading", Static)
        if event.error:
            heading.update(Text(event.error, style="red"))
            return
        r = event.report
        heading.update(Text.assemble((r.model, "bold"), f": {r.params:,} parameters; rule of thumb "
                                     f"{r.nominal_label} x bytes per weight"))
        table = self.query_one("#memory-table", DataTable)
        table.clear(columns=True)
        for col in ("precision", "rule of thumb", "real count", "exact", "bits/param"):
            table.add_column(col, key=col)
        for row in r.rows:
            table.add_row(row.label, format_bytes(row.rule_of_thumb_bytes), format_bytes(row.real_count_bytes),
                          format_bytes(row.exact_bytes), f"{row.bits_per_param:.2f}", key=row.key)
        self.query_one("#memory-gap", Static).update("\n".join(f"• {line}" for line in r.gap_explanation))
        self.query_one("#memory-note", Static).update(" ".join(r.explanations.values()))

    # ------------------------------------------------------------------ LoRA
    @on(Input.Submitted, "#lora-r, #lora-alpha, #lora-targets")
    @on(Checkbox.Changed, "#lora-rslora")
    def _lora_changed(self) -> None:
        self.compute_lora()

    def compute_lora(self) -> None:
        from tui_tuner.learn.lora_math import parse_target_modules

        try:
            r = int(self.query_one("#lora-r", Input).value)
            alpha = float(self.query_one("#lora-alpha", Input).value)
        except ValueError:
            self.query_one("#lora-summary", Static).update(Text("r must be a whole number and alpha a number.",
                                                                style="red"))
            return
        targets = parse_target_modules(self.query_one("#lora-targets", Input).value)
        rslora = self.query_one("#lora-rslora", Checkbox).value
        self.run_lora(self.model, r, alpha, targets, rslora)

    @work(thread=True, exclusive=True, group="learn-lora", exit_on_error=False)
    def run_lora(self, model: str, r: int, alpha: float, targets: Any, rslora: bool) -> None:
        from tui_tuner.learn.layout import model_layout
        from tui_tuner.learn.lora_math import lora_report
        from tui_tuner.learn.weights import ModelNotFound

        try:
            report = lora_report(model_layout(model, self.app_runs_dir()), r, alpha, targets or "all-linear", rslora)
        except (ModelNotFound, ValueError) as exc:
            self.post_message(LoraComputed(model, None, str(exc)))
            return
        self.post_message(LoraComputed(model, report))

    @on(LoraComputed)
    def _lora_computed(self, event: LoraComputed) -> None:
        if event.request != self.model:
            return
        summary = self.query_one("#lora-summary", Static)
        if event.error:
            summary.update(Text(event.error, style="red"))
            return
        r = event.report
        rule = "alpha/sqrt(r)" if r.use_rslora else "alpha/r"
        summary.update(Text.assemble(
            ("trainable ", ""), (f"{r.trainable:,}", "bold"), f" of {r.base_params:,} = ",
            (f"{r.percent_of_base:.3f}%", "bold"), f"; adapter {format_bytes(r.adapter_bytes['float32'])} (float32); "
            f"scaling {rule} = {r.scaling:.3g}"))
        modules = self.query_one("#lora-modules", DataTable)
        modules.clear(columns=True)
        for col in ("module", "n", "W out x in", "A r x in", "B out x r", "each", "total"):
            modules.add_column(col, key=col)
        for m in r.modules:
            modules.add_row(m.name, str(m.count), f"{m.out_features}x{m.in_features}", f"{m.a_shape[0]}x{m.a_shape[1]}",
                            f"{m.b_shape[0]}x{m.b_shape[1]}", f"{m.params_each:,}", f"{m.params_total:,}")
        ranks = self.query_one("#lora-ranks", DataTable)
        ranks.clear(columns=True)
        for col in ("r", "trainable", "% of base", "adapter", "alpha/r", "alpha/sqrt(r)"):
            ranks.add_column(col, key=col)
        for row in r.rank_table:
            style = "bold" if row.r == r.r else ""
            ranks.add_row(*[Text(c, style=style) for c in (
                str(row.r), f"{row.trainable:,}", f"{row.percent_of_base:.3f}%", format_bytes(row.adapter_bytes),
                f"{row.scaling:.3g}", f"{row.rslora_scaling:.3g}")])
        self.query_one("#lora-note", Static).update("\n".join(r.explanations.values()))

    @on(TabbedContent.TabActivated, "#learn-tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "tab-experiments":
            self.query_one(ExperimentLogPanel).refresh_runs(self.app_runs_dir())
