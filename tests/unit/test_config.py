from pathlib import Path

import pytest

from tui_tuner.config.schema import RunConfig, load_config, load_config_text, parse_override

ROOT = Path(__file__).resolve().parents[2]


def messages(text, **kw):
    return [i.format() for i in load_config_text(text, file="c.yaml", **kw).issues]


def test_unknown_key_suggests_closest():
    (msg,) = messages("lora:\n  alpah: 16\n")
    assert msg == "c.yaml:2: `lora.alpah` unknown key — did you mean `lora.alpha`?"


def test_key_in_wrong_section_points_to_right_one():
    (msg,) = messages("r: 8\n")
    assert "`r` belongs at `lora.r`" in msg and msg.startswith("c.yaml:1:")


def test_every_error_reported_with_line_value_and_allowed():
    text = "model:\n  max_seq_length: 8\nlora:\n  r: 0\ntraining:\n  optimizer: adam\n"
    msgs = messages(text)
    assert len(msgs) == 3
    assert msgs[0].startswith("c.yaml:2: `model.max_seq_length` invalid value 8")
    assert msgs[1].startswith("c.yaml:4: `lora.r` invalid value 0")
    assert "c.yaml:6" in msgs[2] and "'adamw_8bit'" in msgs[2] and "'adam'" in msgs[2]


@pytest.mark.parametrize("text,key", [
    ("method: full\nquantization:\n  quant_type: nf4\n", "quantization"),
    ("training:\n  eval_steps: 10\n", "training.eval_steps"),
    ("training:\n  learning_rate: 0\n", "training.learning_rate"),
    ("lora:\n  target_modules: []\n", "lora.target_modules"),
    ("model:\n  chat_template: chatm\n", "model.chat_template"),
    ("output:\n  run_name: ../escape\n", "output.run_name"),
])
def test_impossible_combinations_are_errors(text, key):
    loaded = load_config_text(text, file="c.yaml")
    assert not loaded.ok
    assert key in [i.key for i in loaded.errors]


def test_yaml_tabs_and_syntax_errors_name_the_line():
    (msg,) = messages("model:\n\tname_or_path: x\n")
    assert msg.startswith("c.yaml:2:") and "tabs" in msg
    (msg,) = messages("model: [unclosed\n")
    assert "YAML syntax error" in msg


def test_empty_and_non_mapping_configs():
    assert "empty" in messages("")[0]
    assert "mapping" in messages("- a\n- b\n")[0]


def test_scientific_notation_is_a_number():
    cfg = load_config_text("training:\n  learning_rate: 2e-4\n").config
    assert cfg.training.learning_rate == pytest.approx(2e-4)


def test_overrides():
    assert parse_override("training.learning_rate=1e-4") == (("training", "learning_rate"), 1e-4)
    assert parse_override("lora.target_modules=[q_proj, v_proj]")[1] == ["q_proj", "v_proj"]
    cfg = load_config_text("method: lora\n", overrides=["lora.r=4", "method=qlora"]).config
    assert cfg.lora.r == 4 and cfg.method == "qlora"
    with pytest.raises(ValueError):
        parse_override("no-equals-sign")


def test_round_trip_writes_every_field():
    cfg = RunConfig()
    again = load_config_text(cfg.to_yaml()).config
    assert again == cfg
    assert "gradient_checkpointing" in cfg.to_yaml()


def test_missing_file_is_an_issue_not_an_exception(tmp_path):
    loaded = load_config(tmp_path / "nope.yaml")
    assert not loaded.ok and "not found" in loaded.issues[0].message


def test_non_utf8_config(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_bytes(b"method: lora\nmodel:\n  name_or_path: caf\xe9\n")
    (issue,) = load_config(p).issues
    assert issue.line == 3 and "UTF-8" in issue.message


def test_units_read_at_a_glance():
    from tui_tuner.core.units import format_bytes, format_count, format_duration

    assert format_bytes(605777920) == "577.7 MiB" and format_bytes(512) == "512 B" and format_bytes(None) == "-"
    assert format_duration(3723) == "1:02:03" and format_duration(65) == "1:05" and format_duration(float("nan")) == "-"
    assert format_count(1_000_576) == "1.0M" and format_count(1.1e9) == "1.10B" and format_count(999) == "999"


def test_fit_defaults_are_the_schema_defaults():
    from tui_tuner.config.defaults import FIT_DEFAULTS

    dumped = RunConfig().model_dump(mode="json")
    for section, values in FIT_DEFAULTS.items():
        for key, value in values.items():
            assert dumped[section][key] == value, f"{section}.{key}"


def test_another_objectives_section_warns_only_when_its_values_were_changed():
    import yaml

    from tui_tuner.config.schema import RunConfig, objective_issues

    written_in_full = RunConfig.model_validate(yaml.safe_load(RunConfig().to_yaml()))
    assert objective_issues(written_in_full) == []  # the TUI's new config and run config.yaml files
    changed = RunConfig.model_validate({"dpo": {"beta": 0.5}})
    (issue,) = objective_issues(changed)
    assert issue.key == "dpo" and "objective: dpo" in issue.message
