"""Resuming a run: validate its config and the disk space it needs, then start its worker again.

Lives in `train/` rather than `rundir/` because the space a run needs comes from the fit estimate
(`tui_tuner.fit.disk`), which sits above the run-directory layer.
"""

from __future__ import annotations

from tui_tuner.rundir.runs import (
    ACTIVE_STATES, FINAL_STATES, RunDir, RunError, _write_failed, start_worker, wait_for_ended_attempt,
)
from tui_tuner.rundir.status import write_status


def resume_run(run: RunDir, detach: bool = True) -> int:
    """Continue a stopped, failed or crashed run from its newest complete checkpoint (or start a queued one).

    Refused while the run is running and for a finished run. Returns the supervisor pid.
    """
    st = run.status()
    if st.state in ACTIVE_STATES:
        raise RunError(f"{run.name} is {st.state}; stop it first (`tui-tuner runs stop {run.name}`).")
    if st.state == "finished":
        raise RunError(f"{run.name} finished; there is nothing to resume. Start a new run to train longer.")
    if st.state not in FINAL_STATES | {"queued"}:
        why = f" ({st.error})" if st.error else ""
        raise RunError(f"{run.name} is {st.state}{why}; it cannot be resumed.")
    from tui_tuner.config.schema import load_config

    loaded = load_config(run.config_path)
    if not loaded.ok:
        first = (loaded.errors or loaded.issues)[0].format()
        raise RunError(f"the run's config cannot be used: {first}. Fix {run.config_path}, or start a new run.")
    from tui_tuner.fit.disk import run_disk_need
    from tui_tuner.rundir.diskspace import space_problem

    problem = space_problem(run.path, run_disk_need(loaded.config), f"resuming {run.name}")
    if problem:
        raise RunError(problem)
    wait_for_ended_attempt(run, st)  # `runs resume` right after `runs stop`: the old supervisor is exiting
    if st.state != "queued":
        # Queued again until the new worker takes it, so no reader mistakes the old end for the new one.
        st.state, st.error, st.hint, st.message, st.queued_after = "queued", None, None, None, None
        try:
            write_status(run.path, st)
        except OSError as exc:
            raise RunError(_write_failed(run.path, exc)) from None
    return start_worker(run, detach=detach)
