"""`tui-tuner data check` and the dataset part of `tui-tuner config check`: exit codes, text and JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tui_tuner.config.schema import load_config
from tui_tuner.data import check_config_dataset

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "tui_tuner", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


def test_valid_file_exits_0_and_names_the_format():
    out = cli("data", "check", "data/sample.jsonl")
    assert out.returncode == 0, out.stderr
    assert "data/sample.jsonl: instruction (Alpaca" in out.stdout and "52 example(s)" in out.stdout


def test_errors_exit_2_with_lines_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": }\n'
                   '{"messages": [{"role": "user", "content": "Q"}]}\n{"instruction": "x"}\n')
    out = cli("data", "check", str(bad))
    assert out.returncode == 2
    assert f"{bad}:2:32: broken JSON" in out.stderr
    assert f"{bad}:3: mixed formats" in out.stderr
    assert f"{bad}:4: missing field `output`" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_json_report_lists_every_issue(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join('{"instruction": "a", "output": ""}\n' for _ in range(30)))
    out = cli("data", "check", str(bad), "--json")
    assert out.returncode == 2
    report = json.loads(out.stdout)
    (file_report,) = report["files"]
    assert report["ok"] is False and file_report["format"] == "instruction" and file_report["errors"] == 30
    assert [i["line"] for i in file_report["issues"]] == list(range(1, 31))
    text = cli("data", "check", str(bad))
    assert text.stderr.count("error:") == 20 and "and 10 more issue(s)" in text.stderr


def test_set_overrides_the_field_mapping(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "Q", "answer": "A"}\n')
    assert cli("data", "check", str(path)).returncode == 2
    out = cli("data", "check", str(path), "--set", "data.fields={instruction: question, output: answer}", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["files"][0]["examples"] == 1


def test_bad_override_and_missing_file_exit_2(tmp_path):
    out = cli("data", "check", "data/sample.jsonl", "--set", "data.format=alpaca")
    assert out.returncode == 2 and "data.format" in out.stderr
    out = cli("data", "check", str(tmp_path / "nope.jsonl"))
    assert out.returncode == 2 and "file not found" in out.stderr


def test_config_check_prints_the_dataset_summary():
    out = cli("config", "check", "configs/quickstart.yaml", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(out.stdout)["data"]
    assert [f["config_key"] for f in data["files"]] == ["data.train", "data.eval"]
    assert data["files"][0]["examples"] == 52


def test_config_check_reports_bad_data_lines_under_the_config(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a"}\n')
    cfg = tmp_path / "run.yaml"
    cfg.write_text("data:\n  train: d.jsonl\n")
    out = cli("config", "check", str(cfg))
    assert out.returncode == 2
    assert "d.jsonl:2: `data.train` missing field `output`" in out.stderr
    assert "instruction (Alpaca" in out.stdout


def test_missing_data_file_names_the_config_key_and_line(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("method: lora\ndata:\n  train: missing.jsonl\n  fields: {instrucion: q}\n")
    report = check_config_dataset(load_config(cfg))
    by_key = {i.key: i for i in report.issues_as_config_issues()}
    assert by_key["data.train"].line == 3 and "dataset file not found" in by_key["data.train"].message
    assert by_key["data.fields.instrucion"].line == 4
    assert "did you mean `instruction`" in by_key["data.fields.instrucion"].message
    assert not report.ok
