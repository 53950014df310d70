"""Hardware screen: this machine (live GPU meters, CPU, RAM, disk, backends) and the fit panel.

The report (`tui_tuner.fit.hardware.probe`) is read once in a thread worker; GPU meters are
re-sampled (`sample_gpus`) every two seconds while the screen is shown. The fit panel
estimates memory for the model and settings typed in; "use these settings" carries
them into the Config screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static

from tui_tuner.core.units import format_bytes
from tui_tuner.tui.widgets.fit_panel import FitPanel, SettingsChosen
from tui_tuner.tui.widgets.meters import GpuMeters, GpuReading
from tui_tuner.tui.widgets.key_bar import KeyBar

SAMPLE_S = 2.0
DEFAULT_MODEL = "TinyLlama/TinyLlama-1.1B-Chat-v1.0"


@dataclass
class HardwareProbed(Message):
    report: Any
    catalog: list[str]
    common_gpus: list[tuple[str, int]]


@dataclass
class GpusSampled(Message):
    readings: list[GpuReading]


def sample_reading(sample: Any) -> GpuReading:
    """A `tui_tuner.fit.hardware.GpuSample` as a meter reading."""
    return GpuReading(index=sample.index, name=sample.name, mem_used=sample.mem_used, mem_total=sample.mem_total,
                      util=sample.util_pct, temp_c=sample.temperature_c, power_w=sample.power_w)


def machine_text(report: Any) -> Text:
    """CPU, RAM, disk and the training backends, a line each."""
    text = Text()
    text.append("CPU  ", style="bold")
    text.append(f"{report.cpu_model} · {report.cpu_cores_logical} threads\n")
    if report.ram_total:
        text.append("RAM  ", style="bold")
        text.append(f"{format_bytes(report.ram_available or 0)} free of {format_bytes(report.ram_total)}\n")
    if report.disk_free is not None:
        text.append("Disk ", style="bold")
        text.append(f"{format_bytes(report.disk_free)} free at {report.disk_path}\n")
    text.append("Libs ", style="bold")
    for i, name in enumerate(("torch", "transformers", "peft", "trl", "bitsandbytes", "unsloth")):
        version = report.packages.get(name)
        if i:
            text.append(" · ")
        text.append(name, style="" if version else "dim strike")
        text.append(f" {version}" if version else " ✗", style="dim" if version else "red")
    if report.driver_version:
        text.append(f"\nNVIDIA driver {report.driver_version}, CUDA {report.cuda_driver_version or '?'}", style="dim")
    return text


class HardwareScreen(Screen):
    """This machine, and whether a model fits it."""

    BINDINGS = [
        Binding("ctrl+g", "use_settings", "Use settings"),
        Binding("ctrl+l", "pick_model", "Pick model"),
        Binding("f7", "explain", "Why in full"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.report: Any = None
        self._sampling = False

    def compose(self) -> ComposeResult:
        yield Static(Text.assemble(("Hardware ", "bold"), "this machine and what fits it"), classes="screen-title")
        with VerticalScroll(id="hw-body"):
            yield GpuMeters(id="hw-gpus", empty_text="looking for GPUs...")
            yield Static(id="hw-machine")
        yield KeyBar()

    def on_mount(self) -> None:
        self.probe_machine()
        self.set_interval(SAMPLE_S, self.request_sample)

    @work(thread=True, exclusive=True, group="hw-probe", exit_on_error=False)
    def probe_machine(self) -> None:
        from tui_tuner.fit.estimate import COMMON_GPUS
        from tui_tuner.fit.hardware import probe
        from tui_tuner.models.spec import catalog_names

        report = probe(self.app.runs_dir)
        common = [(f"{g.name} ({format_bytes(g.memory_bytes)})", g.memory_bytes) for g in COMMON_GPUS]
        self.post_message(HardwareProbed(report, catalog_names(), common))

    @on(HardwareProbed)
    async def _probed(self, event: HardwareProbed) -> None:
        report = self.report = event.report
        meters = self.query_one(GpuMeters)
        reason = (report.gpu_unavailable_reason or "no NVIDIA GPU found").rstrip(".")
        meters.show([GpuReading(g.index, g.name, g.memory_used, g.memory_total, g.utilization_pct,
                                g.temperature_c, g.power_w) for g in report.gpus],
                    empty_text=f"No GPU: {reason}. The fit panel below estimates for a card you pick.")
        self.query_one("#hw-machine", Static).update(machine_text(report))
        gpus = [(f"this GPU: {g.name} ({format_bytes(g.memory_total)})", g.memory_total) for g in report.gpus]
        if self.query(FitPanel):
            return
        panel = FitPanel(gpus=gpus + event.common_gpus, catalog=event.catalog, id="hw-fit",
                         **self._initial_fit())
        await self.query_one("#hw-body").mount(panel)

    def _initial_fit(self) -> dict[str, Any]:
        """Start from the config the app opened (its model and settings), else a small popular model."""
        import yaml

        path = self.app.config_path
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) if path else None
        except (OSError, yaml.YAMLError):
            raw = None
        raw = raw if isinstance(raw, dict) else {}

        def get(section: str, key: str, default: Any) -> Any:
            value = (raw.get(section) or {}).get(key) if isinstance(raw.get(section), dict) else None
            return value if isinstance(value, type(default)) else default

        method = raw.get("method") if raw.get("method") in ("lora", "qlora", "full") else "lora"
        return dict(model=get("model", "name_or_path", DEFAULT_MODEL), method=method,
                    seq_len=get("model", "max_seq_length", 1024), batch_size=get("training", "batch_size", 2),
                    lora_r=get("lora", "r", 16))

    # ------------------------------------------------------------------ live meters
    def request_sample(self) -> None:
        if self._sampling or not self.is_current or self.report is None or not self.report.gpus:
            return
        self._sampling = True
        self.sample_worker()

    @work(thread=True, group="hw-sample", exit_on_error=False)
    def sample_worker(self) -> None:
        from tui_tuner.fit.hardware import sample_gpus

        try:
            readings = [sample_reading(s) for s in sample_gpus()]
        finally:
            self.app.call_from_thread(self._sample_done)
        self.post_message(GpusSampled(readings))

    def _sample_done(self) -> None:
        self._sampling = False

    @on(GpusSampled)
    def _sampled(self, event: GpusSampled) -> None:
        if event.readings:
            self.query_one(GpuMeters).show(event.readings)

    # ------------------------------------------------------------------ actions
    def action_use_settings(self) -> None:
        panels = self.query(FitPanel)
        if panels:
            panels.first().use_settings()

    def action_explain(self) -> None:
        """The memory breakdown with each "why" in full (the table cuts them to its width)."""
        panels = self.query(FitPanel)
        text = panels.first().explanation() if panels else None
        if text is None:
            self.notify("no estimate yet: type a model in the fit panel", severity="warning")
            return
        from tui_tuner.tui.screens.modals import TextModal

        self.app.push_screen(TextModal("Memory breakdown: why each part costs what it does", text))

    def action_pick_model(self) -> None:
        """Pick from the catalog: instruct/chat models first, each with its memory at the default settings."""
        panels = self.query(FitPanel)
        if not panels:
            return
        from textual.widgets import Input

        from tui_tuner.fit.picker import DEFAULTS, model_choices
        from tui_tuner.tui.screens.modals import ChoiceModal

        panel = panels.first()

        def picked(name: str | None) -> None:
            if name:
                panel.query_one("#fit-model", Input).value = name

        body = (f"Memory to train at the defaults (seq {DEFAULTS['seq_len']}, batch {DEFAULTS['batch_size']}, "
                f"r {DEFAULTS['lora_r']}). Chat models first: they already follow instructions.")
        self.app.push_screen(ChoiceModal("Pick a model", [(c.name, c.label()) for c in model_choices()],
                                         body=body), picked)

    @on(SettingsChosen)
    async def _settings_chosen(self, event: SettingsChosen) -> None:
        await self.app.carry_settings(event.values)
