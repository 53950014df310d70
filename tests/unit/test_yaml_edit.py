"""The Config screen's form-to-YAML writer: one value changes, everything else stays byte for byte."""

from __future__ import annotations

import pytest
import yaml

from tui_tuner.tui.yaml_edit import set_yaml_value


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    return [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]


def test_comments_are_kept_on_the_edited_line_and_elsewhere():
    text = "# my run\nmodel:\n  name_or_path: foo  # the base\n  # dtype below\n  dtype: bfloat16\n"
    out = set_yaml_value(text, ("model", "name_or_path"), "org/a-much-longer-model-name")
    assert out == text.replace("foo", "org/a-much-longer-model-name")


def test_quoting_is_kept():
    text = "model:\n  name_or_path: 'foo'\n  revision: \"main\"\n"
    out = set_yaml_value(text, ("model", "name_or_path"), "org/bar")
    assert out == "model:\n  name_or_path: 'org/bar'\n  revision: \"main\"\n"
    out = set_yaml_value(out, ("model", "revision"), "v2")
    assert out == "model:\n  name_or_path: 'org/bar'\n  revision: \"v2\"\n"


def test_flow_mapping_stays_a_flow_mapping():
    text = "method: lora\nlora: {r: 8, alpha: 16}  # small\ntraining:\n  epochs: 1\n"
    out = set_yaml_value(text, ("lora", "r"), 32)
    assert out == "method: lora\nlora: {r: 32, alpha: 16}  # small\ntraining:\n  epochs: 1\n"
    out = set_yaml_value(text, ("lora", "dropout"), 0.1)   # a new key in a flow mapping
    assert yaml.safe_load(out)["lora"] == {"r": 8, "alpha": 16, "dropout": 0.1}
    assert "lora: {" in out and "# small" in out and out.endswith("training:\n  epochs: 1\n")


def test_four_space_indentation_is_kept_for_edits_and_new_keys():
    text = "model:\n    name_or_path: foo\nlora:\n    r: 8\n\ntraining:\n    epochs: 1\n"
    out = set_yaml_value(text, ("lora", "r"), 4)
    assert out == text.replace("r: 8", "r: 4")
    out = set_yaml_value(text, ("lora", "alpha"), 16)
    assert out == "model:\n    name_or_path: foo\nlora:\n    r: 8\n    alpha: 16\n\ntraining:\n    epochs: 1\n"
    out = set_yaml_value(text, ("data", "train"), "data/x.jsonl")
    assert out.endswith("training:\n    epochs: 1\ndata:\n    train: data/x.jsonl\n")


def test_a_value_on_the_line_after_its_key():
    text = "model:\n  name_or_path:\n    foo/bar  # base\n  dtype: bfloat16\n"
    out = set_yaml_value(text, ("model", "name_or_path"), "org/baz")
    assert out == "model:\n  name_or_path:\n    org/baz  # base\n  dtype: bfloat16\n"
    out = set_yaml_value(text, ("model", "dtype"), "float16")    # another key: the layout is untouched
    assert out == text.replace("bfloat16", "float16")


def test_a_quoted_value_containing_a_hash():
    text = "data:\n  train: 'data/set#1.jsonl'  # the set\n  eval: null\n"
    out = set_yaml_value(text, ("data", "eval"), "data/eval #2.jsonl")   # " #" would start a comment: quoted
    assert yaml.safe_load(out)["data"] == {"train": "data/set#1.jsonl", "eval": "data/eval #2.jsonl"}
    assert changed_lines(text, out) == [("  eval: null", "  eval: 'data/eval #2.jsonl'")]
    out = set_yaml_value(text, ("data", "train"), "data/set#3.jsonl")
    assert out == text.replace("set#1", "set#3")


@pytest.mark.parametrize("value", [1e-5, 2e-4, 3.0, 16, None, True, "a: b", "x, y", "it's", "2e-4x", "", "a #b", "{x}"])
def test_every_value_reads_back_as_itself(value):
    for text in ("lora:\n  r: 8\n", "lora: {r: 8}\n", "lora:\n  r:\n    8\n"):
        out = set_yaml_value(text, ("lora", "r"), value)
        assert yaml.safe_load(out)["lora"]["r"] == value, (text, out)


def test_last_line_without_newline_and_empty_document():
    assert set_yaml_value("lora:\n  r: 8", ("lora", "alpha"), 16) == "lora:\n  r: 8\n  alpha: 16\n"
    assert yaml.safe_load(set_yaml_value("", ("lora", "r"), 4)) == {"lora": {"r": 4}}
    assert yaml.safe_load(set_yaml_value("# only a comment\n", ("lora", "r"), 4)) == {"lora": {"r": 4}}


def test_sections_lists_and_broken_text_are_left_alone():
    text = "lora:\n  target_modules: [q_proj, v_proj]\n"
    assert set_yaml_value(text, ("lora",), 3) == text
    assert set_yaml_value(text, ("lora", "target_modules"), "all-linear") == text
    assert set_yaml_value("lora:\n  r: [1,\n", ("lora", "r"), 4) == "lora:\n  r: [1,\n"


def test_a_whole_list_replaces_a_block_or_flow_list_and_keeps_the_rest():
    # The GRPO reward picker writes grpo.rewards as a whole: entries with settings stay mappings.
    block = ("grpo:  # reward functions\n  num_generations: 4\n  rewards:\n    - format\n"
             "    - {function: short, weight: 0.5}\n  beta: 0.0\ntraining:\n  max_steps: 2\n")
    value = ["format", {"function": "short", "weight": 0.5}, "my.py:score"]
    out = set_yaml_value(block, ("grpo", "rewards"), value)
    assert out == ("grpo:  # reward functions\n  num_generations: 4\n"
                   "  rewards: [format, {function: short, weight: 0.5}, 'my.py:score']\n  beta: 0.0\n"
                   "training:\n  max_steps: 2\n")
    assert set_yaml_value(out, ("grpo", "rewards"), ["short"]) == out.replace(
        "[format, {function: short, weight: 0.5}, 'my.py:score']", "[short]")
    assert yaml.safe_load(set_yaml_value("objective: grpo\n", ("grpo", "rewards"), ["format"])) == {
        "objective": "grpo", "grpo": {"rewards": ["format"]}}
    assert set_yaml_value("grpo:\n  rewards: x\n", ("grpo",), ["a"]) == "grpo:\n  rewards: x\n"  # a section
