"""Start-up must stay light: `tui-tuner --help` never imports the training stack.

Run in a fresh interpreter so modules imported by other tests do not hide a regression.
"""

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "datasets", "peft", "trl", "unsloth", "bitsandbytes")

PROBE = """
import contextlib, io, json, sys
from tui_tuner.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main({argv!r})
    except SystemExit:
        pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def heavy_modules_after(argv):
    out = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_help_imports_no_heavy_module():
    assert heavy_modules_after(["--help"]) == []


def test_check_with_no_argument_imports_no_heavy_module():
    # the README's first command on a new machine: the hardware report and every shipped config's fit
    assert heavy_modules_after(["check"]) == []


def test_each_subcommand_help_imports_no_heavy_module():
    from tui_tuner.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in sub.choices:
        assert heavy_modules_after([name, "--help"]) == [], name


def test_domain_modules_never_import_textual():
    code = ("import sys, pkgutil, importlib, tui_tuner\n"
            "for m in pkgutil.walk_packages(tui_tuner.__path__, 'tui_tuner.'):\n"
            "    if not m.name.startswith(('tui_tuner.tui', 'tui_tuner.tools')):\n"
            "        importlib.import_module(m.name)\n"
            "print('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_check_of_a_model_does_not_build_the_config_schema():
    code = ("import contextlib, io, sys\nfrom tui_tuner.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['check', 'meta-llama/Llama-3.1-8B', '--vram', '24', '--json'])\n"
            "print(sorted(m for m in ('tui_tuner.config.schema', 'pydantic') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                         env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_broken_install_is_reported_not_answered_with_help(monkeypatch, capsys):
    """A package the TUI needs cannot be imported: say which and how to fix it, exit 1 (not help, exit 0)."""
    import sys

    from tui_tuner.cli import main

    monkeypatch.delitem(sys.modules, "tui_tuner.tui.app", raising=False)
    monkeypatch.setitem(sys.modules, "textual", None)
    assert main([]) == 1
    err = capsys.readouterr().err
    assert "'textual'" in err and "pip install" in err and "usage:" not in err


def test_the_training_callback_module_imports_no_heavy_module():
    """The worker's callback builds its TrainerCallback subclass on first use, not at import."""
    code = f"import json, sys, tui_tuner.train.callback; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
