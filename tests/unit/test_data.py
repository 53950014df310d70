"""Dataset loading: every accepted format is detected and normalized; every error class names its line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tui_tuner.config.schema import DataConfig
from tui_tuner.data.formats import read_as
from tui_tuner.data import load_dataset_file
from tui_tuner.data import readers

ROOT = Path(__file__).resolve().parents[2]


def jsonl(tmp_path, rows, name="d.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def errors(load):
    return [(i.line, i.message) for i in load.issues if i.severity == "error"]


def warnings(load):
    return [(i.line, i.message) for i in load.issues if i.severity == "warning"]


def only_error(load):
    (err,) = errors(load)
    return err


# ---------------------------------------------------------------------------- formats


def test_instruction_with_and_without_input(tmp_path):
    load = load_dataset_file(jsonl(tmp_path, [
        {"instruction": "Add", "input": "2 and 3", "output": "5"},
        {"instruction": "Say hi", "input": "", "output": "Hi"},
        {"instruction": "Be terse", "output": "Ok", "system": "You are terse."},
    ]))
    assert load.ok and load.format == "instruction" and load.issues == []
    assert load.examples[0] == [{"role": "user", "content": "Add\n\n2 and 3"}, {"role": "assistant", "content": "5"}]
    assert load.examples[1][0] == {"role": "user", "content": "Say hi"}
    assert load.examples[2][0] == {"role": "system", "content": "You are terse."}
    assert load.lines == [1, 2, 3]


def test_chat_messages(tmp_path):
    conv = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"},
            {"role": "assistant", "content": "A2"}]
    load = load_dataset_file(jsonl(tmp_path, [{"messages": conv}]))
    assert load.ok and load.format == "chat" and load.examples == [conv]


def test_sharegpt_roles_are_mapped(tmp_path):
    load = load_dataset_file(jsonl(tmp_path, [{"conversations": [
        {"from": "system", "value": "S"}, {"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}]))
    assert load.ok and load.format == "sharegpt"
    assert [m["role"] for m in load.examples[0]] == ["system", "user", "assistant"]


def test_prompt_completion_strings_and_conversational(tmp_path):
    load = load_dataset_file(jsonl(tmp_path, [
        {"prompt": "Capital of France?", "completion": "Paris."},
        {"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Hello"}]},
    ]))
    assert load.ok and load.format == "prompt_completion"
    # trl's conventions: strings are plain text (no chat template), lists are conversational
    assert load.examples[0] == [{"role": "prompt", "content": "Capital of France?"},
                                {"role": "completion", "content": "Paris."}]
    assert load.examples[1][1] == {"role": "assistant", "content": "Hello"}
    assert "plain text" in read_as("prompt_completion", load.examples[:1])
    assert "conversational" in read_as("prompt_completion", load.examples[1:])


def test_openai_weight_zero_turns_are_kept_as_context(tmp_path):
    load = load_dataset_file(jsonl(tmp_path, [{"messages": [
        {"role": "user", "content": "Q1"}, {"role": "assistant", "content": "bad", "weight": 0},
        {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "good", "weight": 1}]}]))
    assert load.ok, [i.message for i in load.issues]
    assert load.examples[0][1] == {"role": "assistant", "content": "bad", "weight": 0}
    assert load.examples[0][3] == {"role": "assistant", "content": "good"}


def test_weight_must_be_zero_or_one_and_something_must_be_trained(tmp_path):
    load = load_dataset_file(jsonl(tmp_path, [
        {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A", "weight": 0.5}]},
        {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A", "weight": 0}]},
    ]))
    messages = [(i.line, i.message) for i in load.issues if i.severity == "error"]
    assert any(line == 1 and "`weight` must be 0" in m for line, m in messages), messages
    assert any(line == 2 and "nothing in this conversation is trained" in m for line, m in messages), messages


def test_conversations_with_role_and_content_are_accepted(tmp_path):
    load = load_dataset_file(jsonl(tmp_path, [{"conversations": [
        {"role": "system", "content": "S"}, {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}]))
    assert load.ok, [i.message for i in load.issues]
    assert load.examples[0] == [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                                {"role": "assistant", "content": "A"}]


def test_preference_files_are_named_as_such(tmp_path):
    load = load_dataset_file(jsonl(tmp_path, [{"prompt": "Q", "chosen": "good", "rejected": "bad"}]))
    assert not load.ok
    message = load.issues[0].message
    assert "preference" in message and "chosen" in message and "data.fields: {completion: chosen}" in message


def test_plain_text_stays_text(tmp_path):
    load = load_dataset_file(jsonl(tmp_path, [{"text": "Once upon a time."}]))
    assert load.ok and load.format == "text"
    assert load.examples == [[{"role": "text", "content": "Once upon a time."}]]


@pytest.mark.parametrize("field", ["reasoning", "thinking", "chain_of_thought"])
def test_reasoning_becomes_a_thinking_block(tmp_path, field):
    load = load_dataset_file(jsonl(tmp_path, [{"instruction": "2+2?", field: "Two plus two is four.", "output": "4"}]))
    assert load.ok and load.format == "reasoning"
    assert load.examples[0][1] == {"role": "assistant", "content": "<think>\nTwo plus two is four.\n</think>\n\n4"}


def test_reasoning_file_with_an_instruction_record_is_not_mixed(tmp_path):
    load = load_dataset_file(jsonl(tmp_path, [
        {"instruction": "a", "reasoning": "r", "output": "b"}, {"instruction": "c", "output": "d"}]))
    assert load.format == "reasoning" and not errors(load) and len(load.examples) == 2
    assert warnings(load)[0][0] == 2 and "without a thinking block" in warnings(load)[0][1]


def test_chat_assistant_reasoning_content(tmp_path):
    load = load_dataset_file(jsonl(tmp_path, [{"messages": [
        {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A", "reasoning_content": "because"}]}]))
    assert load.examples[0][1]["content"] == "<think>\nbecause\n</think>\n\nA"


def test_sample_and_heldout_files_are_valid():
    sample = load_dataset_file(ROOT / "data" / "sample.jsonl")
    heldout = load_dataset_file(ROOT / "data" / "heldout.jsonl")
    assert sample.ok and sample.format == "instruction" and 40 <= len(sample.examples) <= 60
    assert heldout.ok and 5 <= len(heldout.examples) <= 10
    assert not sample.duplicates and not sample.issues


def test_json_array_keeps_line_numbers(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c",\n   "output": 5}\n]\n')
    load = load_dataset_file(path)
    assert load.format == "instruction" and len(load.examples) == 1
    line, message = only_error(load)
    assert line == 3 and "`output` must be a string, got a number" in message


def test_json_wrapped_in_a_data_key(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"data": [{"text": "x"}, {"text": "y"}]}))
    assert len(load_dataset_file(path).examples) == 2


def test_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('instruction,input,output\nAdd,"2, 3",5\n"Multi\nline",,ok\nSay hi,,Hi\n', encoding="utf-8")
    load = load_dataset_file(path)
    assert load.ok and load.format == "instruction"
    assert load.examples[0][0]["content"] == "Add\n\n2, 3"
    assert load.lines == [2, 3, 5]  # a quoted newline makes record 2 span lines 3-4


def test_csv_with_messages_as_json_text(tmp_path):
    path = tmp_path / "d.csv"
    conv = json.dumps([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}])
    path.write_text("messages\n" + '"' + conv.replace('"', '""') + '"\n')
    load = load_dataset_file(path)
    assert load.ok and load.format == "chat" and load.examples[0][1]["content"] == "A"


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([
        {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]},
        {"messages": [{"role": "user", "content": "Q2"}, {"role": "user", "content": "again"}]},
    ]), path)
    load = load_dataset_file(path)
    assert load.format == "chat" and len(load.examples) == 1
    issue = [i for i in load.issues if i.severity == "error"][0]
    assert issue.line == 2 and issue.row_based and issue.format().startswith(f"{path}: row 2: ")


def test_field_mapping_and_forced_format(tmp_path):
    path = jsonl(tmp_path, [{"question": "Q", "answer": "A"}])
    unmapped = load_dataset_file(path)
    assert not unmapped.ok and "data.fields: {instruction: question, output: answer}" in only_error(unmapped)[1]
    mapped = load_dataset_file(path, DataConfig(fields={"instruction": "question", "output": "answer"}))
    assert mapped.ok and mapped.format == "instruction"
    forced = load_dataset_file(path, DataConfig(format="prompt_completion", fields={"prompt": "question",
                                                                                    "completion": "answer"}))
    assert forced.ok and forced.format == "prompt_completion"


def test_bad_mapping_key_is_reported_with_suggestion(tmp_path):
    load = load_dataset_file(jsonl(tmp_path, [{"instruction": "a", "output": "b"}]),
                             DataConfig(fields={"instrction": "q"}))
    assert any("did you mean `instruction`" in m for _, m in errors(load))


def test_system_prompt_and_max_samples(tmp_path):
    path = jsonl(tmp_path, [{"instruction": f"q{i}", "output": "a"} for i in range(5)])
    load = load_dataset_file(path, DataConfig(system_prompt="Be brief.", max_samples=3))
    assert len(load.examples) == 3 and load.limited_to == 3 and load.records == 5
    assert load.examples[0][0] == {"role": "system", "content": "Be brief."}


def test_duplicates_and_unused_fields_are_warnings(tmp_path):
    row = {"instruction": "a", "output": "b", "id": 1}
    load = load_dataset_file(jsonl(tmp_path, [row, {"instruction": "c", "output": "d", "id": 2}, row]))
    assert load.ok and load.duplicates == [(3, 1)]
    msgs = " ".join(m for _, m in warnings(load))
    assert "line 3 repeats line 1" in msgs and "`id` (3)" in msgs


# ---------------------------------------------------------------------------- errors, each with its line


def test_broken_json_has_line_and_column(tmp_path):
    path = jsonl(tmp_path, [{"instruction": "a", "output": "b"}, '{"instruction": "a", "output": }',
                            "{'instruction': 'x', 'output': 'y'}", '{"instruction": "a", "output": "b",}'])
    load = load_dataset_file(path)
    issues = [i for i in load.issues if i.severity == "error"]
    assert [(i.line, i.column) for i in issues] == [(2, 32), (3, 2), (4, 36)]
    assert "broken JSON" in issues[0].message and "double quotes" in issues[1].message
    assert "trailing comma" in issues[2].message
    assert issues[0].format() == f"{path}:2:32: {issues[0].message}"
    assert len(load.examples) == 1  # the good line is still used


def test_all_errors_are_collected(tmp_path):
    rows = [{"instruction": "a", "output": ""} for _ in range(30)]
    load = load_dataset_file(jsonl(tmp_path, rows))
    assert [line for line, _ in errors(load)] == list(range(1, 31))


def test_missing_field_suggests_close_name(tmp_path):
    line, message = only_error(load_dataset_file(jsonl(tmp_path, [
        {"instruction": "a", "output": "b"}, {"instruction": "a", "outptu": "b"}])))
    assert line == 2 and "missing field `output`" in message and "did you mean `outptu`" in message


def test_wrong_types(tmp_path):
    load = load_dataset_file(jsonl(tmp_path, [
        {"instruction": ["a"], "output": "b"}, {"instruction": "a", "output": None},
        {"messages": "hello"}, ["not", "an", "object"]]))
    errs = errors(load)
    assert errs[0][0] == 1 and "`instruction` must be a string, got a list" in errs[0][1]
    assert errs[1][0] == 2 and "`output` is null" in errs[1][1]
    assert (4, errs[-1][1]) == errs[-1] and "must be a JSON object" in errs[-1][1]


def test_wrong_type_in_messages(tmp_path):
    line, message = only_error(load_dataset_file(jsonl(tmp_path, [{"messages": "hello"}])))
    assert line == 1 and "`messages` must be a list of turns, got str" in message


@pytest.mark.parametrize("role,expect", [
    ("asistant", "did you mean `assistant`"), ("tool", "tool calls"), ("narrator", "Allowed roles")])
def test_unknown_roles(tmp_path, role, expect):
    path = jsonl(tmp_path, [{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]},
                            {"messages": [{"role": "user", "content": "Q"}, {"role": role, "content": "A"}]}])
    line, message = only_error(load_dataset_file(path))
    assert line == 2 and "turn 2" in message and expect in message


def test_sharegpt_unknown_role(tmp_path):
    line, message = only_error(load_dataset_file(jsonl(tmp_path, [{"conversations": [
        {"from": "human", "value": "Q"}, {"from": "bot", "value": "A"}]}])))
    assert line == 1 and "unknown role `bot`" in message and "`gpt`" in message


def test_conversation_must_end_with_assistant(tmp_path):
    line, message = only_error(load_dataset_file(jsonl(tmp_path, [{"messages": [
        {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}, {"role": "user", "content": "Q2"}]}])))
    assert line == 1 and "ends with a `user` turn (turn 3)" in message


@pytest.mark.parametrize("roles,expect", [
    (["assistant", "user", "assistant"], "starts with the assistant"),
    (["user", "user", "assistant"], "turns 1 and 2 are both `user`"),
    (["user", "assistant", "system", "user", "assistant"], "turn 3 is a system message"),
])
def test_roles_out_of_order(tmp_path, roles, expect):
    conv = [{"role": r, "content": "x"} for r in roles]
    load = load_dataset_file(jsonl(tmp_path, [{"text": "pad"}, {"messages": conv}, {"messages": conv}],
                                   name="c.jsonl"), DataConfig(format="chat"))
    msgs = [(line, m) for line, m in errors(load) if expect in m]
    assert [line for line, _ in msgs] == [2, 3]


def test_empty_assistant_turn(tmp_path):
    line, message = only_error(load_dataset_file(jsonl(tmp_path, [{"messages": [
        {"role": "user", "content": "Q"}, {"role": "assistant", "content": "  "}]}])))
    assert line == 1 and "turn 2: the assistant's answer is empty" in message


def test_mixed_formats(tmp_path):
    load = load_dataset_file(jsonl(tmp_path, [
        {"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d"},
        {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}]))
    line, message = only_error(load)
    assert load.format == "instruction" and line == 3 and "mixed formats: this record is chat" in message


def test_unknown_format(tmp_path):
    line, message = only_error(load_dataset_file(jsonl(tmp_path, [{"foo": 1}])))
    assert line == 1 and "cannot tell the dataset format" in message


def test_empty_file(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"")
    load = load_dataset_file(path)
    assert not load.ok and "the file is empty (0 bytes)" in only_error(load)[1]


def test_blank_lines_only(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text("\n\n  \n")
    assert "no records" in only_error(load_dataset_file(path))[1]


def test_missing_file(tmp_path):
    assert "file not found" in only_error(load_dataset_file(tmp_path / "nope.jsonl"))[1]


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("hello")
    assert "unsupported file type `.txt`" in only_error(load_dataset_file(path))[1]


def test_utf8_bom_is_accepted_with_a_warning(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"instruction": "a", "output": "b"}).encode() + b"\n")
    load = load_dataset_file(path)
    assert load.ok and len(load.examples) == 1
    assert warnings(load)[0][0] == 1 and "byte-order mark" in warnings(load)[0][1]


def test_utf16_is_an_error(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(json.dumps({"instruction": "a", "output": "b"}).encode("utf-16"))
    line, message = only_error(load_dataset_file(path))
    assert line == 1 and "UTF-16" in message and "iconv" in message


def test_non_utf8_byte_has_line_and_column(tmp_path):
    path = tmp_path / "d.jsonl"
    good = json.dumps({"instruction": "a", "output": "b"}).encode()
    path.write_bytes(good + b"\n" + b'{"instruction": "caf\xe9", "output": "b"}\n' + good + b"\n")
    load = load_dataset_file(path)
    issue = [i for i in load.issues if i.severity == "error"][0]
    assert (issue.line, issue.column) == (2, 21) and "0xe9" in issue.message and "Windows-1252" in issue.message
    assert len(load.examples) == 2


def test_non_utf8_byte_in_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"instruction,output\na,b\nc\xe9,d\n")
    issue = [i for i in load_dataset_file(path).issues if i.severity == "error"][0]
    assert (issue.line, issue.column) == (3, 2)


def test_huge_line_is_skipped_without_reading_it_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 1000)
    path = jsonl(tmp_path, [{"instruction": "a", "output": "b"}, {"text": "x" * 5000},
                            {"instruction": "c", "output": "d"}])
    load = load_dataset_file(path)
    line, message = only_error(load)
    assert line == 2 and "4.90 KiB long (limit 1000 B)" in message and load.lines == [1, 3]


def test_csv_row_with_wrong_number_of_values(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("instruction,output\na,b\nParis, France,c\n")
    line, message = only_error(load_dataset_file(path))
    assert line == 3 and "3 values but the header has 2" in message


def test_json_broken_in_the_middle(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n {"text": "a"},\n {"text": "b"}\n {"text": "c"}\n]')
    load = load_dataset_file(path)
    issue = [i for i in load.issues if i.severity == "error"][0]
    assert issue.line == 4 and "comma is probably missing" in issue.message
    assert len(load.examples) == 2


def test_json_lines_in_a_json_file_are_read_with_a_warning(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('{"text": "a"}\n{"text": "b"}\n')
    load = load_dataset_file(path)
    assert load.ok and len(load.examples) == 2 and "JSON Lines" in warnings(load)[0][1]


def test_labels_cover_whole_tokens_inside_each_span_and_never_zero_width_ones():
    from tui_tuner.data.tokenize import IGNORE_INDEX, _labels_from_offsets

    ids = [10, 11, 12, 13, 14, 15]
    offsets = [(0, 3), (3, 5), (5, 5), (5, 8), (8, 10), (10, 12)]
    # span 4..10: token 11 (3..5) straddles its start, token 12 is zero-width, 15 lies after it
    _, labels = _labels_from_offsets(ids, offsets, [(4, 10)])
    assert labels == [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 13, 14, IGNORE_INDEX]
    _, labels = _labels_from_offsets(ids, offsets, [(0, 5), (10, 12)])
    assert labels == [10, 11, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 15]
    assert _labels_from_offsets([], [], [(0, 4)]) == ([], [])
