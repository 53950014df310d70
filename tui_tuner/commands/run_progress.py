"""Follow a run in the terminal: a rich progress display read from the run directory.

`tui-tuner train` (attached) and `tui-tuner runs attach` use `follow_run`. It reads
exactly what the TUI reads (`status.json` through `RunDir.status()`, `events.jsonl`
through `EventTail`), so what it shows is what any other viewer would see. Ctrl+C asks
the worker to stop gracefully; a second Ctrl+C terminates it.
"""

from __future__ import annotations

import time
from typing import Any

from tui_tuner.rundir.events import EventTail, prepare_text
from tui_tuner.rundir.runs import RunDir
from tui_tuner.rundir.status import RunStatus
from tui_tuner.core.units import format_bytes, format_duration

POLL_S = 0.5
PLAIN_PREPARE_EVERY_S = 10.0
"""Without a terminal, a preparation line (tokenizing ...) is printed at most this often."""


class PreflightProgress:
    """What `train` checks before the run starts (tokenizing N rows ...), on one line of stderr.

    Called as `progress(what, done, total)`. In a terminal the line is rewritten in place
    (at most a few times a second) and cleared at the end; piped, a line is printed when the
    step changes and every `PLAIN_PREPARE_EVERY_S` seconds, so logs stay short.
    """

    def __init__(self, stream: Any = None):
        import sys

        from tui_tuner.rundir.events import PrepareRate

        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.rate = PrepareRate()
        self.shown = ("", 0.0)
        self.width = 0

    def __call__(self, what: str, done: int | None = None, total: int | None = None) -> None:
        text = prepare_text(self.rate.fields(what, done, total))
        now = time.monotonic()
        if self.tty:
            if what == self.shown[0] and now - self.shown[1] < 0.2 and done != total:
                return
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        elif what != self.shown[0] or now - self.shown[1] >= PLAIN_PREPARE_EVERY_S:
            self.stream.write(text + "\n")
        else:
            return
        self.shown = (what, now)
        self.stream.flush()

    def __enter__(self) -> "PreflightProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.tty and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()


class DownloadLines:
    """A model download's progress on stderr: `downloading weights 1.20 of 4.50 GiB · 33.4 MiB/s · ETA 1:34`.

    Called with `DownloadProgress` (tui_tuner.models.download). In a terminal the line is rewritten
    in place; piped, a line is printed when a file starts, every `PLAIN_PREPARE_EVERY_S` seconds
    and at the end, so logs stay short. `note` prints the one-line remarks (size, resuming).
    """

    def __init__(self, stream: Any = None):
        import sys

        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.shown = ("", 0.0)
        self.width = 0

    def note(self, text: str) -> None:
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def __call__(self, p: Any) -> None:
        text = p.text()
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
            if p.finished:
                self.stream.write("\n")
                self.width = 0
        elif p.file != self.shown[0] or p.finished or now - self.shown[1] >= PLAIN_PREPARE_EVERY_S:
            self.stream.write(f"{text} ({p.file})\n" if p.file and not p.finished else text + "\n")
        else:
            return
        self.shown = (p.file, now)
        self.stream.flush()

    def _clear(self) -> None:
        if self.tty and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.width = 0


def progress_fields(st: RunStatus, tail: EventTail) -> dict[str, str]:
    """The figures a progress line shows, as text."""
    last = tail.history.last_log or {}
    gpus = tail.history.latest_gpu()
    gpu = " ".join(f"gpu{i} {format_bytes(g.get('mem_used'))}/{format_bytes(g.get('mem_total'))}"
                   for i, g in sorted(gpus.items()))
    loss = last.get("loss")
    return {
        "loss": f"{loss:.4f}" if isinstance(loss, (int, float)) else "-",
        "lr": f"{last['lr']:.2e}" if isinstance(last.get("lr"), (int, float)) else "-",
        "tok_s": f"{last['tokens_per_s']:.0f}" if isinstance(last.get("tokens_per_s"), (int, float)) else "-",
        "eta": format_duration(last.get("eta_s")) if st.is_active else "-",
        "gpu": gpu,
    }


def describe_end(run: RunDir, st: RunStatus) -> list[tuple[str, str]]:
    """(style, text) lines that say how a run ended; failures include the hint and the log tail."""
    lines: list[tuple[str, str]] = []
    if st.state == "finished":
        lines.append(("green", f"{run.name} finished at step {st.step}: {run.adapter_dir}"))
        lines.append(("", f"chat with it: tui-tuner chat {run.name}"))
    elif st.state == "stopped":
        lines.append(("yellow", f"{run.name} stopped at step {st.step}/{st.max_steps or '?'}"
                      + (f": {st.message}" if st.message else "")))
        ckpt = run.latest_checkpoint()
        if ckpt is not None:
            lines.append(("", f"checkpoint {ckpt.name} saved; continue with: tui-tuner runs resume {run.name}"))
    else:
        lines.append(("red", f"{run.name} {st.state}: {st.error or 'no error recorded'}"))
        if st.hint:
            lines.append(("yellow", f"hint: {st.hint}"))
        tail = run.log_tail(15)
        if tail:
            lines.append(("dim", f"last lines of {run.log_path}:"))
            lines.extend(("dim", "  " + line) for line in tail)
    return lines


def _print_warnings(console: Any, events: list[dict[str, Any]]) -> None:
    """The run's `warning` events (a tracker that could not start, another process on the GPU), as they come."""
    from rich.markup import escape

    for ev in events:
        if ev.get("kind") == "warning" and ev.get("message"):
            console.print(f"[yellow]warning:[/] {escape(str(ev['message']))}")


def follow_run(run: RunDir, console: Any = None, *, interrupt_stops: bool = True) -> RunStatus:
    """Show the run's progress until it ends; returns the final status.

    With `interrupt_stops`, Ctrl+C requests a graceful stop and a second Ctrl+C terminates
    the worker; otherwise Ctrl+C only stops following (the run goes on).
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = console or Console(highlight=False)
    tail = EventTail(run.events_path)
    interrupts = 0
    fancy = console.is_terminal
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[tok_s]} tok/s  "
                   "ETA {task.fields[eta]}  {task.fields[gpu]}"),
        console=console, disable=not fancy, transient=False,
    )
    last_printed_step = -1
    evals_printed: set[Any] = set()
    last_prepare: tuple[str, float] = ("", 0.0)
    st = run.status()
    with progress:
        task = progress.add_task(st.state, total=st.max_steps or None, loss="-", lr="-", tok_s="-", eta="-", gpu="")
        while True:
            try:
                _print_warnings(console, tail.poll())
                st = run.status()
                fields = progress_fields(st, tail)
                prepare = prepare_text(tail.history.prepare) if tail.history.prepare and st.is_active else None
                progress.update(task, description=f"{st.state}: {prepare}" if prepare else st.state,
                                completed=st.step, total=st.max_steps or None, **fields)
                if not fancy and prepare:
                    what = str(tail.history.prepare.get("what"))
                    if what != last_prepare[0] or time.monotonic() - last_prepare[1] >= PLAIN_PREPARE_EVERY_S:
                        last_prepare = (what, time.monotonic())
                        console.print(prepare)
                if not fancy and tail.history.last_log and tail.history.last_log.get("step", -1) != last_printed_step:
                    last_printed_step = tail.history.last_log["step"]
                    console.print(f"step {last_printed_step}/{st.max_steps or '?'} loss {fields['loss']} "
                                  f"lr {fields['lr']} {fields['tok_s']} tok/s ETA {fields['eta']}")
                for ev in tail.history.evals:  # a resume drops later evals: remember steps, not a count
                    if ev.get("step") not in evals_printed and isinstance(ev.get("eval_loss"), (int, float)):
                        evals_printed.add(ev.get("step"))
                        console.print(f"eval at step {ev.get('step')}: loss {ev['eval_loss']:.4f}")
                if st.is_final:
                    break
                time.sleep(POLL_S)
            except KeyboardInterrupt:
                interrupts += 1
                if not interrupt_stops:
                    console.print(f"stopped following; the run goes on. Reattach: tui-tuner runs attach {run.name}")
                    return run.status()
                if interrupts == 1:
                    said = run.request_stop()
                    console.print(f"[yellow]{escape(said)}. Press Ctrl+C again to stop immediately "
                                  "(unsaved progress is lost).[/]")
                else:
                    said = run.request_stop(now=True)
                    console.print(f"[red]warning:[/] {escape(said)}")
    _print_warnings(console, tail.poll())
    for style, text in describe_end(run, st):
        console.print(f"[{style}]{escape(text)}[/]" if style else escape(text))
    return st
