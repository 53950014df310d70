"""What `data.train` names (a local path or a hub dataset) and how hub settings are validated; no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui_tuner.config.schema import DataConfig, validate_raw
from tui_tuner.core.hub_names import looks_like_dataset_id, parse_hub_url, split_problem
from tui_tuner.data.hub import HubSource, data_source, pull_command


def test_a_missing_org_name_is_a_hub_dataset_with_the_configs_subset_and_split(tmp_path):
    cfg = DataConfig(subset="main", split="train[:2000]", eval_dataset_split="validation")
    train = data_source("yahma/alpaca-cleaned", tmp_path, cfg)
    assert train == HubSource("yahma/alpaca-cleaned", None, None, "main", "train[:2000]")
    assert data_source("yahma/alpaca-cleaned", tmp_path, cfg, role="eval").split == "validation"
    assert train.url == "hf://datasets/yahma/alpaca-cleaned" and train.shown == "yahma/alpaca-cleaned:main[train[:2000]]"
    assert pull_command(train) == "tui-tuner data pull yahma/alpaca-cleaned --subset main --split 'train[:2000]'"


def test_a_local_path_wins_and_file_names_stay_files(tmp_path):
    (tmp_path / "yahma" / "alpaca-cleaned").mkdir(parents=True)
    assert data_source("yahma/alpaca-cleaned", tmp_path) == tmp_path / "yahma" / "alpaca-cleaned"
    # a missing data file is reported as a missing file, never looked up on the hub
    assert data_source("data/typo.jsonl", tmp_path) == tmp_path / "data" / "typo.jsonl"
    assert data_source("a/b/c", tmp_path) == tmp_path / "a" / "b" / "c"
    assert not looks_like_dataset_id("../x") and not looks_like_dataset_id("data/x.parquet")


def test_hf_urls_name_a_file_or_a_whole_dataset():
    assert parse_hub_url("hf://datasets/org/name@v1.0/data/train-00000.parquet") == \
        ("org/name", "v1.0", "data/train-00000.parquet")
    assert parse_hub_url("hf://datasets/org/name") == ("org/name", None, None)
    source = data_source("hf://datasets/org/name/data/train.jsonl", None, DataConfig(subset="x", split="test"))
    assert source.file == "data/train.jsonl" and source.subset is None and source.split == "train"
    assert source.shown == source.url == "hf://datasets/org/name/data/train.jsonl"
    for bad in ("hf://org/name", "hf://datasets/org", "hf://datasets/org/name/readme.md",
                "hf://datasets/org/name/../x.jsonl"):
        with pytest.raises(ValueError):
            parse_hub_url(bad)


@pytest.mark.parametrize("split", ["train", "train[:2000]", "train[10%:20%]", "test[-100:]", "train+validation",
                                   "train[:50%]+test[:10]"])
def test_split_expressions_datasets_accepts(split):
    assert split_problem(split) is None


@pytest.mark.parametrize("split", ["train[:20", "train[5]", "", "train[a:b]", "train validation"])
def test_split_expressions_refused_with_examples(split):
    assert "train[:2000]" in split_problem(split)


def test_the_schema_refuses_bad_hub_settings_on_their_key():
    loaded = validate_raw({"data": {"train": "hf://models/org/name", "split": "train[:5", "subset": " "}})
    keys = {i.key: i.message for i in loaded.issues}
    assert set(keys) == {"data.train", "data.split", "data.subset"}
    assert "hf://datasets/" in keys["data.train"] and "train[:2000]" in keys["data.split"]
    assert validate_raw({"data": {"train": "hf://datasets/org/name", "split": "train[:5]"}}).ok


def test_frozen_run_config_names_the_hub_dataset_by_url(tmp_path):
    from tui_tuner.config.schema import RunConfig
    from tui_tuner.rundir.runs import _frozen_config

    cfg = RunConfig.model_validate({"data": {"train": "org/name", "eval": "data/held.jsonl"}})
    frozen = _frozen_config(cfg, tmp_path)
    assert frozen.data.train == "hf://datasets/org/name"
    assert frozen.data.eval == str((tmp_path / "data" / "held.jsonl").resolve())
    assert isinstance(data_source(frozen.data.train, Path("/elsewhere"), frozen.data), HubSource)
