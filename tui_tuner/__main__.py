"""`python -m tui_tuner` runs the same CLI as the `tui-tuner` command."""

from tui_tuner.cli import main

if __name__ == "__main__":  # importing the module (e.g. walking the package) must not run the CLI
    raise SystemExit(main())
