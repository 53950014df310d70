"""Train screen: one run, live — loss chart, metrics, progress, GPU meters, log tail.

Attaches to `app.attached_run`. Twice a second a thread worker reads what the worker
process appended to the run directory (`RunView.poll`, incremental by byte offset) and
posts one `RunPolled` with a snapshot; the screen redraws every widget from it once.
Stop asks the worker to save and stop (confirmed); Detach leaves it running.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import ProgressBar, Sparkline, Static

from tui_tuner.rundir.objective_curves import charts_for
from tui_tuner.rundir.runs import RunDir
from tui_tuner.tui.run_view import RunView, TrainSnapshot
from tui_tuner.core.units import format_duration
from tui_tuner.tui.screens.modals import ConfirmModal
from tui_tuner.tui.widgets.line_chart import ChartSeries, LineChart, format_tick
from tui_tuner.tui.widgets.completions_panel import CompletionsPanel
from tui_tuner.tui.widgets.meters import GpuMeters
from tui_tuner.tui.widgets.key_bar import KeyBar
from tui_tuner.tui.widgets.samples_panel import SamplesPanel

POLL_INTERVAL_S = 0.5
STATE_STYLES = {"queued": "yellow", "running": "green", "stopping": "yellow", "finished": "bold green",
                "stopped": "cyan", "failed": "bold red", "crashed": "bold red",
                "unreadable": "bold red"}
CHARTS = ("loss", "learning rate", "grad norm")


@dataclass
class RunPolled(Message):
    """A poll of the attached run finished (posted from the polling thread)."""

    snapshot: TrainSnapshot
    view: RunView


def state_text(state: str) -> Text:
    return Text(f"● {state}", style=STATE_STYLES.get(state, ""))


class TrainScreen(Screen):
    """The attached run's live view."""

    BINDINGS = [
        Binding("s", "stop", "Stop"),
        Binding("d", "detach", "Detach"),
        Binding("c", "cycle_chart", "Chart"),
        Binding("a", "toggle_samples", "Samples"),
        Binding("g", "export", "Export"),
        Binding("f7", "explain", "Error in full"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.view: RunView | None = None
        self.snapshot: TrainSnapshot | None = None
        self.chart_index = 0
        self._polling = False
        self._samples_announced = False

    def compose(self) -> ComposeResult:
        yield Static(id="train-title", classes="screen-title")
        yield Static(id="train-backend")
        yield Static(id="train-error")
        with Horizontal(id="train-progress"):
            yield ProgressBar(total=None, show_eta=False, id="train-bar")
            yield Static(id="train-step")
        yield Static(id="train-stats")
        yield Sparkline([], id="train-sparkline")
        yield LineChart(id="train-chart", empty_text="waiting for the first loss point")
        yield CompletionsPanel(id="train-completions")
        yield SamplesPanel(id="train-samples")
        with Horizontal(id="train-bottom"):
            yield GpuMeters(id="train-gpus", empty_text="GPU: no readings from this run (CPU training, or not started)")
            with Vertical(id="train-log-pane"):
                yield Static(Text("train.log", style="bold"), classes="pane-title")
                yield Static(id="train-log")
        yield KeyBar()

    def on_mount(self) -> None:
        self.watch(self.app, "attached_run", self._attached_changed, init=True)
        self.set_interval(POLL_INTERVAL_S, self.request_poll)

    def on_screen_resume(self) -> None:
        self.request_poll()  # catch up at once with what was written while another screen showed

    # ------------------------------------------------------------------ attaching
    def _attached_changed(self, run: RunDir | None) -> None:
        if run is None:
            self.view = None
            self._show_detached()
            return
        if self.view is not None and self.view.run == run:
            return
        self.remove_class("-no-run")
        self.view = RunView(run)
        self.snapshot = None
        self._samples_announced = False
        self.query_one(LineChart).set_series([])
        self.query_one(Sparkline).data = []
        self._update_title(run.name, None)
        self.request_poll()

    def _show_detached(self) -> None:
        self.add_class("-no-run")
        self.query_one("#train-title", Static).update(Text.assemble(("Train ", "bold"), "no run attached"))
        self.query_one("#train-backend", Static).update("")
        self.query_one("#train-stats", Static).update(Text(
            "Start a run from Config (F2, ctrl+r) or open one from Runs (F4, enter).", style="dim"))
        self.query_one("#train-error", Static).display = False

    # ------------------------------------------------------------------ polling
    def request_poll(self) -> None:
        """Start a poll unless one is running (a slow first read of a long run is never doubled)."""
        if self.view is None or self._polling or not self.is_current:
            return
        self._polling = True
        self.poll_run(self.view)

    @work(thread=True, group="train-poll", exit_on_error=False)
    def poll_run(self, view: RunView) -> None:
        # Runs in a thread: reads files only, hands the result back as a message.
        try:
            snapshot = view.poll()
        except Exception:
            self.app.call_from_thread(self._poll_done)  # let the next tick try again
            raise
        self.post_message(RunPolled(snapshot, view))

    def _poll_done(self) -> None:
        self._polling = False

    @on(RunPolled)
    def _run_polled(self, event: RunPolled) -> None:
        self._polling = False  # only now: the next poll starts after this one is drawn
        if event.view is not self.view:
            return  # attached to another run meanwhile
        self.show_snapshot(event.snapshot)

    # ------------------------------------------------------------------ drawing
    def _update_title(self, name: str, snap: TrainSnapshot | None) -> None:
        title = Text.assemble(("Train ", "bold"), name, "  ")
        backend = Text("backend: chosen when the worker starts", style="dim")
        if snap is not None:
            st = snap.status
            title.append_text(state_text(st.state))
            if st.backend:
                reason = (st.backend_reason or "").removeprefix("backend:").strip()
                backend = Text.assemble(("backend ", "dim"), (st.backend, "bold"), (f" — {reason}" if reason else ""))
                if st.extra.get("precision"):
                    backend.append(f"  · {st.extra['precision']} precision", style="dim")
        self.query_one("#train-title", Static).update(title)
        self.query_one("#train-backend", Static).update(backend)

    def show_snapshot(self, snap: TrainSnapshot) -> None:
        """Redraw every widget from one snapshot (the only place widgets change)."""
        self.snapshot = snap
        st = snap.status
        self._update_title(snap.run_name, snap)
        error = self.query_one("#train-error", Static)
        if st.state in ("failed", "crashed") and (st.error or st.hint):
            error.update(Text.assemble((f"{st.state}: ", "bold"), st.error or "", "\n" if st.hint else "",
                                       (st.hint or "", "italic")))
            error.display = True
        elif snap.stalled:
            error.update(Text(snap.stalled, style="bold yellow"))
            error.display = True
        else:
            error.display = False
        if st.state != getattr(self, "_shown_state", None):
            self._shown_state = st.state
            self.refresh_bindings()  # "error in full" comes and goes with the failure
        bar = self.query_one(ProgressBar)
        bar.display = bool(st.max_steps) or st.state in ("queued", "running")
        if st.max_steps:
            bar.update(total=st.max_steps, progress=st.step)
        step_text = f" step {st.step}/{st.max_steps or '?'}"
        if snap.prepare and st.state == "running":
            step_text += f"  ·  {snap.prepare}"  # tokenizing N rows, loading the model: before the first step
        self.query_one("#train-step", Static).update(step_text)
        stats = self.query_one("#train-stats", Static)
        stats.update(self._stats_text(snap, stats.size.width or self.size.width - 2))
        width = max(8, self.query_one(Sparkline).size.width)
        self.query_one(Sparkline).data = [y for _, y in snap.loss[-width:]]
        self.query_one(LineChart).empty_text = ("no loss points were logged" if st.is_final
                                                else "waiting for the first loss point")
        self._draw_chart()
        self.query_one(CompletionsPanel).show(snap.completions, snap.completions_step)
        self.query_one(SamplesPanel).show(snap.samples, snap.elapsed_s)
        if snap.samples and not self._samples_announced:
            self._samples_announced = True
            if not self.has_class("-samples"):
                self.notify(f"sample answers at step {snap.samples[-1]['step']}: press a to see them",
                            title="samples")
        self.query_one(GpuMeters).show(snap.gpus)
        rows = self._log_rows() - len(snap.warnings)
        log = Text(no_wrap=True, overflow="ellipsis")
        for warning in snap.warnings:  # another process grabbing this run's GPU memory: shown above the log
            log.append(f"warning: {warning}\n", style="bold yellow")
        log.append("\n".join(snap.log_tail[-max(1, rows):]) or "(empty)")
        self.query_one("#train-log", Static).update(log)

    def _log_rows(self) -> int:
        return max(1, self.query_one("#train-log", Static).size.height or 8)

    def _stats_text(self, snap: TrainSnapshot, width: int = 1000) -> Text:
        """One line of numbers; what does not fit `width` is left out, least telling first."""
        last, st = snap.last_log, snap.status
        parts: list[tuple[str, str]] = []
        if snap.loss:
            parts.append(("loss", f"{snap.loss[-1][1]:.4f}" if last.get("loss") is None else f"{last['loss']:.4f}"))
        if snap.eval_loss:
            parts.append(("eval", f"{snap.eval_loss[-1][1]:.4f}"))
        lr = last.get("learning_rate", last.get("lr"))
        if isinstance(lr, (int, float)):
            parts.append(("lr", f"{lr:.2e}"))
        if isinstance(last.get("grad_norm"), (int, float)):
            parts.append(("grad norm", f"{last['grad_norm']:.3g}"))
        if isinstance(last.get("tokens_per_s"), (int, float)):
            parts.append(("tok/s", format_tick(last["tokens_per_s"])))
        parts.append(("elapsed", format_duration(snap.elapsed_s)))
        eta = last.get("eta_s") if st.state == "running" else None
        parts.append(("ETA", format_duration(eta) if isinstance(eta, (int, float)) else "-"))
        parts.append(("checkpoints", str(snap.checkpoints)))
        for name in ("grad norm", "lr", "tok/s", "checkpoints"):
            if sum(len(n) + len(v) + 3 for n, v in parts) - 2 <= width:
                break
            parts = [p for p in parts if p[0] != name]
        text = Text()
        for i, (name, value) in enumerate(parts):
            if i:
                text.append("  ")
            text.append(f"{name} ", style="dim")
            text.append(value, style="bold")
        return text

    def _objective_charts(self) -> list:
        """DPO/ORPO/KTO/reward/GRPO curves logged so far (before the loss: they say more for these objectives)."""
        snap = self.snapshot
        if snap is None or snap.objective == "sft":
            return []
        return charts_for(snap.objective, set(snap.metrics))

    def _draw_chart(self) -> None:
        snap, chart = self.snapshot, self.query_one(LineChart)
        extra = self._objective_charts()
        titles = [t for t, _ in extra] + list(CHARTS)
        self.chart_index %= len(titles)
        kind = titles[self.chart_index]
        chart.border_title = kind
        if snap is None:
            return
        if self.chart_index < len(extra):
            chart.set_series([ChartSeries(label, snap.metrics.get(key, []))
                              for label, key in extra[self.chart_index][1]])
            return
        if kind == "loss":
            series = [ChartSeries("train loss", snap.loss)]
            if snap.eval_loss:
                series.append(ChartSeries("eval loss", snap.eval_loss, colour="warning"))
        elif kind == "learning rate":
            series = [ChartSeries("learning rate", snap.learning_rate, colour="success")]
        else:
            series = [ChartSeries("grad norm", snap.grad_norm, colour="accent")]
        chart.set_series(series)

    # ------------------------------------------------------------------ actions
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        snap = self.snapshot
        if action == "explain":  # only a failed run has an error to read in full
            return bool(snap and snap.status.state in ("failed", "crashed"))
        if action == "export":  # offered once the run has ended with an adapter
            return bool(snap and snap.status.state in ("finished", "stopped") and self.view is not None
                        and self.view.run.adapter_dir.is_dir())
        return True

    def action_toggle_samples(self) -> None:
        """Switch the middle of the screen between the chart and the sample answers by step."""
        self.toggle_class("-samples")
        if self.snapshot is not None:
            self.query_one(SamplesPanel).show(self.snapshot.samples, self.snapshot.elapsed_s)

    def action_export(self) -> None:
        if self.view is not None:
            self.app.export_run(self.view.run)

    def action_explain(self) -> None:
        """The error, its hint and the end of train.log in full (the panel cuts them at 8 lines)."""
        snap = self.snapshot
        if snap is None or self.view is None:
            return
        st = snap.status
        text = Text.assemble((f"{st.state}: ", "bold"), st.error or "no error recorded", "\n\n",
                             (st.hint or "", "italic"), "\n\n", ("end of train.log:\n", "bold"),
                             ("\n".join(self.view.run.log_tail(40)), "dim"))
        from tui_tuner.tui.screens.modals import TextModal

        self.app.push_screen(TextModal(f"{self.view.run.name}: why it ended", text))

    def action_cycle_chart(self) -> None:
        self.chart_index = (self.chart_index + 1) % (len(CHARTS) + len(self._objective_charts()))
        self._draw_chart()

    def action_stop(self) -> None:
        view = self.view
        if view is None:
            self.notify("no run attached", severity="warning")
            return
        state = view.run.status().state
        if state not in ("running", "queued", "stopping"):
            self.notify(f"{view.run.name} is not running ({state})", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.notify(view.run.request_stop(), title=view.run.name)

        self.app.push_screen(ConfirmModal(f"Stop {view.run.name}?",
                                          "The worker saves a checkpoint and the adapter at the next step, "
                                          "then stops. You can resume it later from Runs.", yes="Stop", danger=True),
                             answered)

    def action_detach(self) -> None:
        """Leave the run training and go to the Runs screen."""
        if self.view is not None:
            self.notify(f"{self.view.run.name} keeps training; reattach from Runs", title="detached")
        self.app.attached_run = None
        self.app.action_show("runs")
