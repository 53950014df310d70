"""Preference, KTO and prompt-only data; GRPO reward functions; objective settings in the config (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tui_tuner.config.schema import validate_raw
from tui_tuner.data.preference import conversational, load_objective_file, sniff_first_record
from tui_tuner.data import rewards as R


def write(tmp_path: Path, rows, name="d.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


U = lambda text: {"role": "user", "content": text}  # noqa: E731
A = lambda text: {"role": "assistant", "content": text}  # noqa: E731


def test_pairs_in_every_accepted_shape_become_the_same_messages(tmp_path):
    path = write(tmp_path, [
        {"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."},
        {"prompt": [U("Hi")], "chosen": [A("Hello!")], "rejected": [A("Go away.")]},
        {"chosen": [U("Hi"), A("Hello!")], "rejected": [U("Hi"), A("Go away.")]},  # whole conversations
        {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."},  # HH-RLHF
        {"prompt": "Hi", "chosen": [U("Hi"), A("Hello!")], "rejected": [U("Hi"), A("Go away.")]},  # UltraFeedback
    ])
    load = load_objective_file(path, "dpo")
    assert not load.issues and len(load.examples) == 5
    for ex in load.examples:
        assert conversational(ex, load.kind) == {"prompt": [U("Hi")], "chosen": [A("Hello!")],
                                                 "rejected": [A("Go away.")]}, ex.line


def test_pair_problems_are_reported_by_line(tmp_path):
    path = write(tmp_path, [
        {"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."},
        {"prompt": "Same", "chosen": "x", "rejected": "x"},
        {"prompt": "Empty", "chosen": "", "rejected": "x"},
        {"prompt": "Half", "chosen": "x"},
    ])
    load = load_objective_file(path, "dpo")
    by_line = {i.line: i for i in load.issues}
    assert by_line[2].severity == "warning" and "identical" in by_line[2].message
    assert by_line[3].severity == "error" and "`chosen` is empty" in by_line[3].message
    assert by_line[4].severity == "error" and "missing `rejected`" in by_line[4].message
    assert len(load.examples) == 2 and load.identical_pairs == [2]


def test_kto_reads_labels_and_unpairs_pair_files(tmp_path):
    labelled = load_objective_file(write(tmp_path, [
        {"prompt": "Hi", "completion": "Hello!", "label": True},
        {"prompt": "Hi", "completion": "Go away.", "label": "false"}]), "kto")
    assert labelled.ok and labelled.labels == {"desirable": 1, "undesirable": 1}
    pairs = load_objective_file(write(tmp_path, [{"prompt": "Hi", "chosen": "Hello!", "rejected": "Go."}], "p.jsonl"),
                                "kto")
    assert [(e.completion, e.label) for e in pairs.examples] == [([A("Hello!")], True), ([A("Go.")], False)]


def test_prompt_only_data_keeps_extra_columns_for_the_reward_functions(tmp_path):
    load = load_objective_file(write(tmp_path, [{"question": "2+3?", "answer": "5", "level": 1}]), "grpo")
    assert load.ok and load.extra_columns == ["answer", "level"]
    assert conversational(load.examples[0], load.kind) == {"prompt": [U("2+3?")], "answer": "5", "level": 1}


def test_data_check_without_a_config_recognises_pair_and_kto_files(tmp_path):
    assert sniff_first_record(write(tmp_path, [{"prompt": "a", "chosen": "b", "rejected": "c"}])) == "dpo"
    assert sniff_first_record(write(tmp_path, [{"prompt": "a", "completion": "b", "label": 1}], "k.jsonl")) == "kto"
    assert sniff_first_record(write(tmp_path, [{"instruction": "a", "output": "b"}], "s.jsonl")) is None


def test_builtin_rewards():
    done = [[A("<think>3 and 4 make 7</think> The answer is 7.")]]
    assert R.format_reward(done) == [1.0]
    assert R.format_reward([[A("7")]]) == [0.0]
    assert R.make_numeric_match("answer")(done, answer=["7"]) == [1.0]
    assert R.make_numeric_match("answer")(done, answer=["8"]) == [0.0]
    assert R.make_answer_match("answer")([[A("<think>x</think>  Seven ")]], answer=["seven"]) == [1.0]
    assert R.make_length_penalty(10)([[A("x" * 10)], [A("x" * 15)], [A("x" * 40)]]) == [0.0, -0.5, -1.0]
    assert R.make_short(10)([[A("")], [A("x" * 5)]]) == [1.0, 0.5]
    with pytest.raises(KeyError, match="no `answer` column"):
        R.make_answer_match("answer")(done)


def test_user_reward_is_checked_without_running_it_and_failures_carry_the_sample(tmp_path):
    (tmp_path / "mine.py").write_text("import sys\nsys.exit('ran at check time')\n"
                                      "def score(prompts, completions, **kw):\n    return [len(c[0]['content']) for c in completions]\n"
                                      "def broken(prompts, completions, **kw):\n    return 1 / 0\n")
    assert R.reward_spec_problems(["mine.py:score", "mine.py:nope"], tmp_path) == [
        (1, f"{tmp_path / 'mine.py'} defines no function `nope` (functions there: broken, score).")]
    (tmp_path / "ok.py").write_text("def broken(prompts, completions, **kw):\n    return 1 / 0\n"
                                    "def short(prompts, completions, **kw):\n    return [1.0]\n")
    [reward] = R.resolve_rewards(["ok.py:broken"], tmp_path)
    call = R.guarded(reward)
    with pytest.raises(R.RewardFunctionError) as info:
        call(prompts=[[U("What is 2+3?")]], completions=[[A("5")]], answer=["5"])
    assert "reward function `broken` raised ZeroDivisionError" in str(info.value)
    assert "What is 2+3?" in str(info.value) and "'answer': '5'" in str(info.value) and "Traceback" in str(info.value)
    [wrong_count] = R.resolve_rewards(["ok.py:short"], tmp_path)
    with pytest.raises(R.RewardFunctionError, match="returned 1 values for 2 completions"):
        R.guarded(wrong_count)(prompts=[[U("a")]] * 2, completions=[[A("x")]] * 2)


def test_settings_of_another_objective_are_flagged():
    loaded = validate_raw({"objective": "sft", "dpo": {"beta": 0.2}})
    [issue] = loaded.issues
    assert issue.key == "dpo" and issue.severity == "warning" and "objective: dpo" in issue.message
    assert validate_raw({"objective": "dpo", "dpo": {"beta": 0.2}}).issues == []
    bad = validate_raw({"objective": "grpo", "grpo": {"rewards": ["formt"], "num_generations": 3},
                        "training": {"batch_size": 2, "grad_accumulation": 1}})
    messages = {i.key: i.message for i in bad.issues}
    assert "did you mean `format`" in messages["grpo.rewards.0"]
    assert "multiple of num_generations" in messages["grpo.num_generations"]


def test_runs_record_only_their_own_objective_section(tmp_path):
    from tui_tuner.config.schema import load_config_text
    from tui_tuner.rundir.runs import run_config_yaml

    cfg = validate_raw({"objective": "dpo", "data": {"train": "x.jsonl"}}).config
    text = run_config_yaml(cfg)
    assert "dpo:" in text and "grpo:" not in text and "kto:" not in text
    assert load_config_text(text).issues == []
