"""The `tui-tuner` command: the TUI with no arguments, a headless subcommand otherwise.

    tui-tuner                 # open the TUI
    tui-tuner --help          # list the subcommands

Each subcommand lives in `tui_tuner/commands/<name>.py` with `register(subparsers)`;
those modules import nothing heavy at top level, so `--help` and `check` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from tui_tuner import __version__

# Order is the order shown in --help.
COMMAND_MODULES = [
    "tui_tuner.commands.check_cmd",
    "tui_tuner.commands.config_cmd",
    "tui_tuner.commands.data_cmd",
    "tui_tuner.commands.train_cmd",
    "tui_tuner.commands.runs_cmd",
    "tui_tuner.commands.sweep_cmd",
    "tui_tuner.commands.learn_cmd",
    "tui_tuner.commands.chat_cmd",
    "tui_tuner.commands.eval_cmd",
    "tui_tuner.commands.export_cmd",
    "tui_tuner.commands.publish_cmd",
    "tui_tuner.commands.model_cmd",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tui-tuner",
        description="Fine-tune LLMs with LoRA / QLoRA from a terminal. With no command, opens the TUI.",
    )
    parser.add_argument("--version", action="version", version=f"tui-tuner {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def broken_install_message(exc: ModuleNotFoundError) -> str:
    """What to tell the user when a package tui-tuner depends on cannot be imported."""
    name = exc.name or str(exc)
    if name.split(".")[0] == "tui_tuner":
        return (f"error: this tui-tuner installation is incomplete ({exc}). Reinstall it: "
                "`pip install --force-reinstall tui-tuner`, or `pip install -e .` in a clone.")
    return (f"error: the package {name!r}, which tui-tuner needs here, is not installed ({exc}). "
            "Reinstall tui-tuner with its dependencies: `pip install tui-tuner` (or `pip install -e .` in a "
            f"clone), or install it alone: `pip install {name.split('.')[0]}`.")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tui-tuner`; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            return _open_tui(args)
        return int(args.handler(args) or 0)
    except ModuleNotFoundError as exc:
        print(broken_install_message(exc), file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


def _open_tui(args: argparse.Namespace) -> int:
    app_module = importlib.import_module("tui_tuner.tui.app")  # a missing package is reported by main()
    return int(app_module.run_app() or 0)
