"""`python -m tui_tuner.train RUN_DIR`: train a run directory (see tui_tuner/train/__init__.py)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tui_tuner.train",
                                     description="Train one run directory created by `tui-tuner train`.")
    parser.add_argument("run_dir", help="the run directory (runs/<name>-<timestamp>)")
    parser.add_argument("--worker", action="store_true",
                        help="train in this process, without the supervisor that records crashes")
    args = parser.parse_args(argv)
    if args.worker:
        from tui_tuner.train.worker import run_worker

        return run_worker(args.run_dir)
    from tui_tuner.train.supervisor import supervise

    return supervise(args.run_dir)


if __name__ == "__main__":
    sys.exit(main())
