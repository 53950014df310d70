"""The packaged quickstart: the same bytes as the repository's, written without overwriting."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui_tuner.config.schema import load_config
from tui_tuner.config.starter import QUICKSTART_FILES, is_empty_folder, packaged_file, write_quickstart
from tui_tuner.models.demo import sample_dataset_path

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("relative", QUICKSTART_FILES)
def test_packaged_files_are_the_repositorys(relative):
    assert packaged_file(relative).read_bytes() == (REPO / relative).read_bytes(), (
        f"tui_tuner/config/quickstart/{relative} differs from {relative}: copy the repository's file over it")


def test_written_into_an_empty_folder_it_validates_and_keeps_the_users_files(tmp_path):
    assert is_empty_folder(tmp_path)
    (tmp_path / ".git").mkdir()  # hidden entries do not make a folder a project
    assert is_empty_folder(tmp_path)
    written = write_quickstart(tmp_path)
    assert written.written == list(QUICKSTART_FILES) and written.kept == []
    assert not is_empty_folder(tmp_path)
    loaded = load_config(written.config)
    assert loaded.issues == [] and loaded.config is not None
    assert loaded.config.data.train == "data/sample.jsonl" and loaded.config.data.eval == "data/heldout.jsonl"
    (tmp_path / "data" / "sample.jsonl").write_text('{"text": "mine"}\n')
    again = write_quickstart(tmp_path)
    assert again.written == [] and again.kept == list(QUICKSTART_FILES)
    assert (tmp_path / "data" / "sample.jsonl").read_text() == '{"text": "mine"}\n'
    assert "kept your configs/quickstart.yaml" in again.describe()


def test_demo_tokenizer_text_comes_from_the_package():
    assert sample_dataset_path() == packaged_file("data/sample.jsonl") and sample_dataset_path().is_file()


def test_config_quickstart_command_writes_then_keeps(tmp_path, capsys):
    from tui_tuner.cli import main

    assert main(["config", "quickstart", str(tmp_path)]) == 0
    assert "wrote configs/quickstart.yaml, data/sample.jsonl, data/heldout.jsonl" in capsys.readouterr().out
    assert main(["config", "quickstart", str(tmp_path)]) == 0
    assert "kept your configs/quickstart.yaml" in capsys.readouterr().out
    (tmp_path / "file").write_text("")
    assert main(["config", "quickstart", str(tmp_path / "file")]) == 1  # not a folder: said, not raised
    assert "cannot write the quickstart" in capsys.readouterr().err


def test_missing_sample_data_says_how_to_write_it(tmp_path):
    from tui_tuner.config.schema import load_config_text
    from tui_tuner.train.preflight import _data_issues

    loaded = load_config_text("model:\n  name_or_path: tui-tuner/demo-tiny-llama\n")
    issues = _data_issues(loaded.config, tmp_path)
    assert len(issues) == 1 and "tui-tuner config quickstart" in issues[0].message
    loaded = load_config_text("data:\n  train: mine.jsonl\n")
    assert "tui-tuner config quickstart" not in _data_issues(loaded.config, tmp_path)[0].message
