"""`tui-tuner train CONFIG [--set k=v] [--name N] [--detach] [--no-probe|--probe]`: start a training run.

The config and its dataset are checked first (the same checks as `config check`); on any
error nothing is created and the exit status is 2. Otherwise a run directory is created
under `output.runs_dir` and the worker starts in its own session, so it outlives this
terminal. Attached (the default) shows progress read from the run directory; Ctrl+C asks
the worker to stop gracefully, a second Ctrl+C stops it at once. `--detach` returns at once.
"""

from __future__ import annotations

import argparse
import os
import sys

from tui_tuner.commands.options import add_set_option, exit_status


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a LoRA / QLoRA adapter (or a full fine-tune) from a config",
                       description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML run config, e.g. configs/quickstart.yaml")
    add_set_option(p)
    p.add_argument("--name", help="run name prefix (default: output.run_name, else model and method)")
    p.add_argument("--detach", action="store_true", help="start the run and return at once")
    probe = p.add_mutually_exclusive_group()
    probe.add_argument("--no-probe", dest="probe", action="store_false", default=None,
                       help="skip the preflight memory probe (on by default on a GPU)")
    probe.add_argument("--probe", dest="probe", action="store_true",
                       help="run the preflight memory probe on CPU too")
    multi = p.add_argument_group("several GPUs (launched through torchrun; see docs/multi-gpu.md)")
    multi.add_argument("--gpus", type=int, metavar="N",
                       help="processes (GPUs) on this machine; overrides distributed.gpus")
    multi.add_argument("--nnodes", type=int, default=1, metavar="M", help="machines taking part (default 1)")
    multi.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                       help="rendezvous address every machine can reach (with --nnodes > 1)")
    multi.add_argument("--rdzv-id", metavar="ID", help="job id shared by every machine (default: the run name)")
    slurm = p.add_argument_group("SLURM clusters (see docs/multi-gpu.md)")
    slurm.add_argument("--slurm", action="store_true",
                       help="create the run and write RUN/sbatch.sh for it instead of starting it here")
    slurm.add_argument("--submit", action="store_true", help="with --slurm: submit the script with sbatch")
    slurm.add_argument("--slurm-time", metavar="HH:MM:SS", help="with --slurm: the job's time limit (#SBATCH --time)")
    slurm.add_argument("--slurm-partition", metavar="NAME", help="with --slurm: the partition (#SBATCH --partition)")
    p.set_defaults(handler=run_train)


def check_before_start(config_path: str, overrides: list[str], name: str | None,
                       progress: object = None) -> tuple[object | None, list]:
    """(LoadedConfig, every issue): config, model/dataset/template/tracker preflight, dataset and run name,
    all checked before anything is created.

    Tokenizing the dataset here is not extra work: the token ids are cached
    (`tui_tuner.data.tokenized`) and the worker reads them instead of tokenizing again.
    `progress(what, done, total)` hears how it goes.
    """
    from tui_tuner.config.schema import ConfigIssue, load_config
    from tui_tuner.core.names import run_name_problem

    loaded = load_config(config_path, overrides)
    issues = list(loaded.issues)
    if not loaded.ok:
        return loaded, issues
    from tui_tuner.train.preflight import preflight_issues

    issues.extend(preflight_issues(loaded))
    if any(i.severity == "error" for i in issues):
        return loaded, issues  # a missing model or data file: the dataset check has nothing to read
    from tui_tuner.data import check_config_dataset
    from tui_tuner.data.report import load_tokenizer_if_local

    # With the model's tokenizer (local only, never downloaded) the check also catches examples
    # that max_seq_length cuts down to nothing, before a run directory exists.
    if progress:
        progress("loading the tokenizer")
    tokenizer, _ = load_tokenizer_if_local(loaded.config.model)
    issues.extend(check_config_dataset(loaded, tokenizer, cache=tokenizer is not None,
                                       progress=progress).issues_as_config_issues())
    if name is not None:
        problem = run_name_problem(name)
        if problem:
            issues.append(ConfigIssue("", problem, file="--name"))
    return loaded, issues


def run_train(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tui_tuner.commands.console import print_issues
    from tui_tuner.commands.run_progress import follow_run
    from tui_tuner.rundir.runs import RunError, create_run, start_worker

    overrides = list(args.overrides) + ([f"distributed.gpus={args.gpus}"] if args.gpus is not None else [])
    from tui_tuner.commands.run_progress import PreflightProgress

    with PreflightProgress() as progress:
        loaded, issues = check_before_start(args.config, overrides, args.name, progress=progress)
    plan = _launch_plan(args, loaded, issues)
    errors = [i for i in issues if i.severity == "error"]
    print_issues(issues)
    if errors:
        print(f"{args.config}: not started ({len(errors)} error(s) above).", file=sys.stderr)
        return 2
    try:
        run = create_run(loaded.config, loaded.base_dir, args.name, probe=args.probe, source_config=args.config)
        if plan is not None and plan.distributed:
            from tui_tuner.train.distributed import save_plan

            save_plan(run.path, plan)
        if getattr(args, "slurm", False):
            return _slurm(args, run, plan, loaded.base_dir)
        pid = start_worker(run, detach=args.detach)
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    console = Console(highlight=False)
    if plan is not None and plan.nnodes > 1:
        import shlex

        from tui_tuner.train.distributed import worker_argv

        console.print("on each other machine (same paths, the run folder on a shared disk) run:\n  "
                      + shlex.join(worker_argv(run.path.resolve(), plan)), soft_wrap=True)
    if args.detach:
        console.print(f"started [bold]{run.name}[/] (pid {pid}) in {run.path}")
        console.print(f"  follow it:  tui-tuner runs attach {run.name}")
        console.print(f"  stop it:    tui-tuner runs stop {run.name}")
        return 0
    console.print(f"training [bold]{run.name}[/] in {run.path} — Ctrl+C stops it (a checkpoint is saved); "
                  "the run keeps going if this terminal closes.")
    st = follow_run(run, console)
    return exit_status(st.state)


def _slurm(args: argparse.Namespace, run, plan, project_dir) -> int:
    """Write (and with --submit, submit) the run's sbatch script; the run stays queued until SLURM starts it."""
    from tui_tuner.train.distributed import LaunchPlan
    from tui_tuner.train.slurm import SlurmError, submit, write_script

    script = write_script(run.path, plan or LaunchPlan(), project_dir=project_dir, time_limit=args.slurm_time,
                          partition=args.slurm_partition)
    print(f"created {run.name} (queued for SLURM) and wrote {script}")
    if not args.submit:
        print(f"  submit it:  sbatch {script}\n  follow it:  tui-tuner runs attach {run.name}")
        return 0
    try:
        job = submit(script)
    except SlurmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from tui_tuner.rundir.status import StatusKeeper

    keeper = StatusKeeper(run.path, run.raw_status())
    keeper.update(message=f"submitted to SLURM as job {job}", slurm_job_id=job)
    print(f"submitted as SLURM job {job}; follow it:  tui-tuner runs attach {run.name}")
    return 0


def _launch_plan(args: argparse.Namespace, loaded, issues: list):
    """The multi-GPU launch plan from the config and flags; its problems are added to `issues`."""
    from tui_tuner.config.schema import ConfigIssue

    if loaded is None or not loaded.ok:
        return None
    from tui_tuner.train.distributed import gpu_count_problem, plan_for

    endpoint = args.rdzv_endpoint
    if getattr(args, "slurm", False) and args.nnodes > 1 and not endpoint:
        from tui_tuner.train.slurm import RDZV_PORT

        endpoint = f"slurm-first-node:{RDZV_PORT}"  # the sbatch script sets the real one when the job starts
    plan = plan_for(loaded.config, nnodes=args.nnodes, rdzv_endpoint=endpoint, rdzv_id=args.rdzv_id)
    problem = plan.problem()
    if problem:
        issues.append(ConfigIssue("distributed", problem, file="--gpus/--nnodes"))
        return plan
    if plan.distributed and not getattr(args, "slurm", False):  # SLURM allocates the GPUs elsewhere
        from tui_tuner.fit.devices import visible_gpus
        from tui_tuner.fit.hardware import list_gpus

        try:  # what CUDA will see: CUDA_VISIBLE_DEVICES and MIG slices, not every card NVML lists
            available = len(visible_gpus(list_gpus(), os.environ.get("CUDA_VISIBLE_DEVICES")))
        except Exception:  # no NVML: the machine has no usable NVIDIA GPU
            available = 0
        found = gpu_count_problem(plan, available)
        if found:
            issues.append(ConfigIssue("distributed.gpus", found[1], file=args.config, severity=found[0]))
    return plan


