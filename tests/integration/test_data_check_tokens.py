"""`tui-tuner data check --config` measures token lengths with the model's own tokenizer (the demo model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tui_tuner.config.schema import load_config
from tui_tuner.data import check_config_dataset

ROOT = Path(__file__).resolve().parents[2]


def cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "tui_tuner", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)


@pytest.mark.slow  # two CLI processes that each import transformers
def test_token_stats_and_truncation(demo_model_dir):
    assert os.environ["TUI_TUNER_CACHE"] and str(demo_model_dir).startswith(os.environ["TUI_TUNER_CACHE"])
    out = cli("data", "check", "data/sample.jsonl", "--config", "configs/quickstart.yaml", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    tokens = report["files"][0]["tokens"]
    assert report["tokenizer"] == "demo-tiny-llama"
    assert 0 < tokens["min"] <= tokens["mean"] <= tokens["p95"] <= tokens["max"] <= 256
    assert tokens["truncated"] == 0 and 0 < tokens["trained_tokens"] < tokens["total_tokens"]

    short = cli("data", "check", "data/sample.jsonl", "--config", "configs/quickstart.yaml",
                "--set", "model.max_seq_length=32")
    assert short.returncode == 0  # truncation is a warning: training still works
    assert "longer than model.max_seq_length=32" in short.stderr
    assert "longer than max_seq_length 32" in short.stdout


def test_check_config_dataset_with_a_tokenizer(demo_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(demo_model_dir))
    report = check_config_dataset(load_config(ROOT / "configs" / "quickstart.yaml"), tokenizer)
    assert report.ok and report.chat_template_name == "the tokenizer's own"
    train, heldout = report.files
    assert train.tokens.max < 256 and heldout.tokens is not None
    assert "tokens [demo-tiny-llama" in report.summary_text()


def test_bad_custom_template_is_a_config_error(demo_model_dir, tmp_path):
    from transformers import AutoTokenizer

    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"data:\n  train: {ROOT / 'data' / 'sample.jsonl'}\nmodel:\n"
                   "  chat_template: \"{{ messages[0]['content'] + 1 }}\"\n")
    report = check_config_dataset(load_config(cfg), AutoTokenizer.from_pretrained(str(demo_model_dir)))
    (issue,) = report.config_issues
    assert issue.key == "model.chat_template" and issue.line == 4 and "failed to render" in issue.message


def test_tokenizer_not_on_this_machine_is_a_note_not_an_error(monkeypatch):
    from tui_tuner.config.schema import ModelConfig
    from tui_tuner.data import load_tokenizer_if_local

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer, note = load_tokenizer_if_local(ModelConfig(name_or_path="nobody-here/no-such-model"))
    assert tokenizer is None and "not available on this machine" in note and "no-such-model" in note


def _config_for(tmp_path, model_dir) -> Path:
    cfg = tmp_path / "show.yaml"
    cfg.write_text(f"model:\n  name_or_path: {model_dir}\n  max_seq_length: 512\n"
                   f"data:\n  train: {ROOT / 'data' / 'sample.jsonl'}\n")
    return cfg


def test_show_marks_what_is_trained_and_json_gives_ids_and_labels(tiny_model, tmp_path):
    cfg = _config_for(tmp_path, tiny_model("llama3"))
    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps({"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q1?"},
        {"role": "assistant", "content": "Skip me.", "weight": 0}, {"role": "user", "content": "Q2?"},
        {"role": "assistant", "content": "Learn me."}]}) + "\n" + json.dumps(
        {"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Yo"}]}) + "\n")
    shown = cli("data", "check", str(data), "--config", str(cfg), "--show", "1")
    assert shown.returncode == 0, shown.stderr
    assert "trained text between ⟦ and ⟧" in shown.stdout  # piped: a marker, no colour codes
    assert "\x1b[" not in shown.stdout
    assert "Skip me.<|eot_id|><|start_header_id|>user" in shown.stdout
    assert "⟦Learn me.<|eot_id|>⟧" in shown.stdout and "⟦Skip me." not in shown.stdout
    assert "--- line 1" in shown.stdout and "--- line 2" not in shown.stdout

    as_json = json.loads(cli("data", "check", str(data), "--config", str(cfg), "--show", "2", "--json").stdout)
    examples = as_json["shown"]
    assert [e["line"] for e in examples] == [1, 2]
    for example in examples:
        ids, labels = example["input_ids"], example["labels"]
        assert len(ids) == len(labels) and all(lab in (-100, tok) for tok, lab in zip(ids, labels))
        assert example["trained_tokens"] == sum(lab != -100 for lab in labels) > 0
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model("llama3")))
    first = examples[0]
    assert tokenizer.decode([t for t, lab in zip(first["input_ids"], first["labels"]) if lab != -100]) == \
        "Learn me.<|eot_id|>"
