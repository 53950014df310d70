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
