"""Hardware screen: this machine (live GPU meters, CPU, RAM, disk, backends) and the fit panel.

The report (`tui_tuner.fit.hardware.probe`) is read once in a thread worker; GPU meters are
re-sampled (`sample_gpus`) every two seconds while the screen is shown. The fit panel
estimates memory for the model and settings typed in; "use these settings" carries
them into the Config screen. On an Apple Silicon Mac the GPU is its Metal working-set limit
(part of the unified memory) and the fit uses MLX's memory terms.
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


@dataclass
class FitChangesComputed(Message):
    """The changes that make the fit panel's settings fit (`make_fit.FitChange`s), or why there are none."""

    changes: list[Any]
    base: dict[tuple[str, ...], Any]
    note: str = ""


def fit_changes_for(request: Any) -> tuple[list[Any], str]:
    """(ranked changes, note) for a fit panel request: [] with the reason when it fits or cannot be estimated."""
    from tui_tuner.fit.make_fit import fit_changes
    from tui_tuner.models.spec import ModelSpecError, model_spec

    try:
        spec = model_spec(request.model)
    except ModelSpecError as exc:
        return [], str(exc)
    settings = {"seq_len": request.seq_len, "batch_size": request.batch_size, "lora_r": request.lora_r}
    changes = fit_changes(spec, request.method, settings, request.vram_bytes, backend=request.backend,
                          unsloth_ok=request.backend != "mlx")
    if not changes:
        return [], f"{request.method} already fits in {format_bytes(request.vram_bytes)} ({request.gpu_name})"
    return changes, ""


def sample_reading(sample: Any) -> GpuReading:
    """A `tui_tuner.fit.hardware.GpuSample` as a meter reading."""
    return GpuReading(index=sample.index, name=sample.name, mem_used=sample.mem_used, mem_total=sample.mem_total,
                      util=sample.util, temp_c=sample.temp_c, power_w=sample.power_w)


HISTORY = 60
"""Samples of utilisation and memory kept per GPU (two minutes at one every two seconds)."""
BARS = " ▁▂▃▄▅▆▇█"


def sparkline(values: list[float], top: float, width: int = 30) -> str:
    """The last `width` values as block characters scaled to `top` (as nvitop's history)."""
    shown = values[-width:]
    return "".join(BARS[min(len(BARS) - 1, max(0, round(v / top * (len(BARS) - 1))))] if top else " " for v in shown)


class GpuHistory:
    """A short history of utilisation and memory per GPU, fed by the screen's sampling."""

    def __init__(self, size: int = HISTORY):
        self.size = size
        self.util: dict[int, list[float]] = {}
        self.mem: dict[int, list[float]] = {}
        self.total: dict[int, float] = {}

    def add(self, readings: list[GpuReading]) -> None:
        for r in readings:
            for store, value in ((self.util, r.util), (self.mem, r.mem_used)):
                series = store.setdefault(r.index, [])
                series.append(float(value or 0))
                del series[:-self.size]
            self.total[r.index] = float(r.mem_total or 0)

    def text(self) -> Text:
        out = Text()
        for i in sorted(self.util):
            out.append(f"GPU {i} ", style="bold")
            out.append("util ", style="dim")
            out.append(sparkline(self.util[i], 100.0).ljust(30), style="green")
            out.append("  mem ", style="dim")
            out.append(sparkline(self.mem[i], self.total.get(i, 0.0)).ljust(30), style="cyan")
            out.append(f" {format_bytes(self.mem[i][-1])} of {format_bytes(self.total.get(i, 0))}\n", style="dim")
        return out


def processes_text(report: Any) -> Text:
    """Who holds memory on each GPU: pid, user, memory, command (marked when outside this container)."""
    from tui_tuner.fit.devices import freest, label

    text = Text()
    visible = report.visible_gpus
    best = freest(visible)
    if best is not None and len(visible) > 1:
        text.append(f"Runs start on the freest GPU: {label(best)}, {format_bytes(best.memory_free)} free\n",
                    style="bold")
    for whole in report.gpus:
        for g in [whole, *whole.mig_slices]:
            if not g.processes:
                continue
            text.append(f"{label(g)}\n", style="bold")
            for p in g.processes:
                mem = format_bytes(p.used_bytes).rjust(9)
                text.append(f"  {p.pid:>8} {(p.user or '?')[:10]:<10} {mem}  ")
                text.append((p.command or p.name)[:70] + "\n", style="dim" if p.elsewhere else "")
    if report.torch_problem:
        text.append(f"torch cannot use the GPU: {report.torch_problem}\n", style="bold red")
    return text


def mac_text(mac: Any) -> Text:
    """An Apple Silicon Mac's GPU: chip, unified memory, GPU cores, and the Metal limit with what it means."""
    from tui_tuner.fit.mac import metal_note

    text = Text()
    text.append("Mac  ", style="bold")
    free = f", {format_bytes(mac.memory_free_bytes)} free" if mac.memory_free_bytes is not None else ""
    cores = f" · {mac.gpu_cores} GPU cores" if mac.gpu_cores else ""
    text.append(f"{mac.chip} · {format_bytes(mac.memory_bytes)} unified memory{free}{cores}\n")
    text.append("GPU  ", style="bold")
    text.append(f"Metal working-set limit {format_bytes(mac.metal_limit_bytes)}", style="bold")
    text.append(f" ({mac.metal_limit_source}); training runs on MLX\n")
    text.append(metal_note(mac) + "\n", style="dim")
    return text


def machine_text(report: Any) -> Text:
    """CPU, RAM, disk and the training backends, a line each (a Mac's unified memory first)."""
    text = mac_text(report.mac) if getattr(report, "mac", None) is not None else Text()
    text.append("CPU  ", style="bold")
    text.append(f"{report.cpu_model} · {report.cpu_cores_logical} threads\n")
    if report.ram_total:
        text.append("RAM  ", style="bold")
        text.append(f"{format_bytes(report.ram_available or 0)} free of {format_bytes(report.ram_total)}\n")
    if report.disk_free is not None:
        text.append("Disk ", style="bold")
        text.append(f"{format_bytes(report.disk_free)} free at {report.disk_path}\n")
    text.append("Libs ", style="bold")
    libs = ("torch", "transformers", "peft", "mlx", "mlx-lm") if getattr(report, "mac", None) is not None else (
        "torch", "transformers", "peft", "trl", "bitsandbytes", "unsloth")
    for i, name in enumerate(libs):
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
        Binding("ctrl+f", "make_fit", "Make it fit"),
        Binding("f7", "explain", "Why in full"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.report: Any = None
        self._sampling = False
        self.history = GpuHistory()

    def compose(self) -> ComposeResult:
        yield Static(Text.assemble(("Hardware ", "bold"), "this machine and what fits it"), classes="screen-title")
        with VerticalScroll(id="hw-body"):
            yield GpuMeters(id="hw-gpus", empty_text="looking for GPUs...")
            yield Static(id="hw-history")
            yield Static(id="hw-procs")
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
        reason = (report.gpu_unavailable_reason or "no GPU found").rstrip(".")
        empty = f"No GPU: {reason}. The fit panel below estimates for a card you pick."
        if report.mac is not None:
            empty = (f"{report.mac.chip}: its GPU shares the unified memory (below); the fit panel checks against "
                     "the Metal working-set limit with MLX's memory terms.")
        meters.show([GpuReading(g.index, g.name, g.memory_used, g.memory_total, g.utilization_pct,
                                g.temperature_c, g.power_w) for g in report.gpus], empty_text=empty)
        self.query_one("#hw-machine", Static).update(machine_text(report))
        self.query_one("#hw-procs", Static).update(processes_text(report))
        from tui_tuner.fit.devices import label

        # Freest first: the fit panel checks against the GPU a run would get, with what is free now.
        visible = sorted(report.visible_gpus, key=lambda g: -g.memory_free)
        gpus: list[tuple[Any, ...]] = [
            (f"{label(g)}: {format_bytes(g.memory_free)} free of {format_bytes(g.memory_total)}", g.memory_free)
            for g in visible]
        if report.mac is not None and not visible:
            mac = report.mac
            gpus.append((f"{mac.chip} Metal limit: {format_bytes(mac.metal_limit_bytes)} of "
                         f"{format_bytes(mac.memory_bytes)} (MLX)", mac.metal_limit_bytes, "mlx"))
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
            self.history.add(event.readings)
            self.query_one("#hw-history", Static).update(self.history.text())

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

    def action_make_fit(self) -> None:
        panels = self.query(FitPanel)
        if not panels or panels.first().request is None:
            self.notify("type a model and settings in the fit panel first", severity="warning")
            return
        panel = panels.first()
        self.make_fit_worker(panel.request, panel.chosen_settings() or {})

    @work(thread=True, exclusive=True, group="hw-make-fit", exit_on_error=False)
    def make_fit_worker(self, request: Any, base: dict[tuple[str, ...], Any]) -> None:
        changes, note = fit_changes_for(request)
        self.post_message(FitChangesComputed(changes, base, note))

    @on(FitChangesComputed)
    def _fit_changes(self, event: FitChangesComputed) -> None:

        if not event.changes:
            self.notify(event.note, title="Make it fit")
            return
        from tui_tuner.tui.screens.modals import ChoiceModal

        choices = [(str(i), f"{format_bytes(c.estimate_bytes):>8}  {'fits ' if c.fits else 'over '} {c.title} — {c.cost}")
                   for i, c in enumerate(event.changes)]

        def picked(value: str | None) -> None:
            if value is not None:
                change = event.changes[int(value)]
                self.run_worker(self.app.carry_settings({**event.base, **change.settings}), exclusive=False)

        self.app.push_screen(ChoiceModal("Make it fit: changes, cheapest first", choices,
                                         body="Pick one to carry it into the config."), picked)

    @on(SettingsChosen)
    async def _settings_chosen(self, event: SettingsChosen) -> None:
        await self.app.carry_settings(event.values)
