"""Every config shipped in configs/ is valid against the schema."""

from pathlib import Path

import pytest

from tui_tuner.config.schema import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_presets_exist():
    assert len(CONFIGS) >= 5


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_preset_is_valid(path):
    loaded = load_config(path)
    assert loaded.ok, [i.format() for i in loaded.issues]
    assert not [i for i in loaded.issues if i.severity == "error"]
    # data paths resolve inside the project
    train = loaded.config.resolve_path(loaded.config.data.train, loaded.base_dir)
    assert train.exists(), train
