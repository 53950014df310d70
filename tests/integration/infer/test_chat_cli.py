"""`tui-tuner chat` as scripts use it: one-shot answers, compare mode, and clear errors."""

import json
import subprocess
import sys

from tests.infer_fixtures import MEMORISED, SYSTEM


def tui_tuner(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "tui_tuner", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_one_shot_compare_answers_with_base_and_tuned(memorised_run):
    done = tui_tuner("chat", memorised_run.name, "--runs-dir", memorised_run.parent, "--prompt", MEMORISED[0][0],
                     "--system", SYSTEM, "--temperature", "0", "--repetition-penalty", "1", "--compare", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["tuned"]["answer"] == MEMORISED[0][1] and out["tuned"]["finish_reason"] == "eos"
    assert out["base"]["answer"] != out["tuned"]["answer"]


def test_one_shot_streams_plain_text_from_a_checkpoint(memorised_run):
    done = tui_tuner("chat", memorised_run, "--checkpoint", "60", "--prompt", MEMORISED[1][0], "--system", SYSTEM,
                     "--temperature", "0", "--repetition-penalty", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == MEMORISED[1][1]
    assert "tokens" in done.stderr  # the footer: tokens, tok/s, why it ended


def test_bad_targets_and_settings_are_clear_errors(memorised_run, tmp_path):
    for args in (("chat", "no-such-run", "--runs-dir", memorised_run.parent, "--prompt", "hi"),
                 ("chat", memorised_run, "--checkpoint", "999", "--prompt", "hi"),
                 ("chat", memorised_run, "--top-p", "0", "--prompt", "hi"),
                 ("chat", tmp_path, "--prompt", "hi")):
        done = tui_tuner(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("error:") and "Traceback" not in done.stderr, done.stderr
