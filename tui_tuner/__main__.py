"""`python -m tui_tuner` runs the same CLI as the `tui-tuner` command."""

from tui_tuner.cli import main

raise SystemExit(main())
