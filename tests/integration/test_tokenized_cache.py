"""The tokenized-dataset cache: the same ids as tokenizing each example, reused only for the same inputs.

Uses the demo model's real tokenizer; no training here (the worker's use of the cache is
covered by the training tests, which start from `train`'s preflight).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tui_tuner.config.schema import RunConfig
from tui_tuner.data import load_dataset_file, tokenize_conversation
from tui_tuner.data.tokenized import tokenize_file, tokenized_cache_dir

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tokenizer(demo_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(demo_model_dir))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_TUNER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "tokenized"


def _data(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


ROWS = [{"instruction": f"Say {i} twice", "output": f"{i} {i}"} for i in range(30)]


def test_cached_ids_equal_tokenizing_each_example_and_are_reused(tmp_path, tokenizer, cache):
    from datasets import Dataset

    cfg = RunConfig()
    cfg.model.max_seq_length = 24
    path = _data(tmp_path, ROWS + [{"instruction": "x " * 60, "output": "cut"}, ROWS[0], "not an object"])
    template = tokenizer.chat_template
    seen = []
    first = tokenize_file(path, cfg, tokenizer, template, cache=True, progress=lambda *a: seen.append(a))
    assert not first.from_cache and first.arrow_path.parent.parent == cache and seen[-1][0] == "tokenizing"
    load = load_dataset_file(path, cfg.data)
    ds = Dataset.from_file(str(first.arrow_path))
    assert ds["line"] == load.lines and len(ds) == first.load.count == 32  # the duplicate stays, the string not
    for row, conversation in zip(ds, load.examples):
        enc = tokenize_conversation(tokenizer, conversation, 24, True, template)
        assert row["input_ids"] == enc["input_ids"] and row["labels"] == enc["labels"]
        assert row["length"] == enc["length"] and row["trained"] == enc["trained_tokens"]
    stats = first.tokens
    assert stats.truncated == 1 and stats.truncated_lines == [31] and stats.no_answer_left == 1
    assert [i.line for i in first.load.errors] == [33] and first.load.duplicates == [(32, 1)]

    again = tokenize_file(path, cfg, tokenizer, template, cache=True)
    assert again.from_cache and again.arrow_path == first.arrow_path and again.tokens == stats
    assert [i.line for i in again.load.errors] == [33]  # issues still come from reading the file


@pytest.mark.parametrize("change", ["file", "max_seq_length", "template", "completion_only_loss", "system_prompt"])
def test_any_input_of_the_ids_is_a_new_entry(tmp_path, tokenizer, cache, change):
    cfg = RunConfig()
    path = _data(tmp_path, ROWS)
    template = tokenizer.chat_template
    first = tokenize_file(path, cfg, tokenizer, template, cache=True)
    if change == "file":
        _data(tmp_path, ROWS[:-1])
    elif change == "max_seq_length":
        cfg.model.max_seq_length = 64
    elif change == "template":
        template = template + " "
    elif change == "completion_only_loss":
        cfg.data.completion_only_loss = False
    else:
        cfg.data.system_prompt = "Be brief."
    second = tokenize_file(path, cfg, tokenizer, template, cache=True)
    assert not second.from_cache and second.arrow_path != first.arrow_path
    assert len(list(cache.iterdir())) == 2


def test_streamed_check_keeps_no_examples_and_matches_the_list_loader(tmp_path, tokenizer, cache):
    from tui_tuner.data import check_file, token_stats

    cfg = RunConfig()
    path = _data(tmp_path, ROWS)
    report = check_file(path, cfg, tokenizer, chat_template=tokenizer.chat_template)
    load = load_dataset_file(path, cfg.data)
    expected = token_stats(tokenizer, load.examples, load.lines, cfg.model.max_seq_length, True,
                           tokenizer.chat_template)
    assert report.tokens == expected and report.load.examples == load.examples and report.load.count == 30
    assert not cache.exists()  # data check alone does not fill the cache
    assert tokenized_cache_dir() == cache


def test_an_example_the_template_refuses_is_an_error_on_its_line(tmp_path, tokenizer, cache):
    template = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not "
                "supported') }}{% endif %}{{ m['role'] + ': ' + m['content'] + eos_token }}{% endfor %}")
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    path = _data(tmp_path, [{"messages": chat}, {"messages": [{"role": "system", "content": "terse"}, *chat]}])
    for _ in range(2):  # tokenized, then from the cache: the same error
        result = tokenize_file(path, RunConfig(), tokenizer, template, cache=True)
        assert [(line, "System role not supported" in m) for line, m in result.tokens.refused] == [(2, True)]
        assert result.tokens.min > 0
    assert result.from_cache


@pytest.mark.parametrize("later", [300, 1500])
def test_a_big_file_read_once_with_a_guessed_format_reports_what_reading_it_twice_does(tmp_path, tokenizer, cache,
                                                                                      monkeypatch, later):
    """1,000 instruction rows, then `later` chat rows: the first records guess instruction, which the
    majority confirms (300: those rows are mixed-format errors) or overturns (1,500: read again as chat)."""
    import tui_tuner.data.loader as loader

    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    rows = [{"instruction": f"Say {i}", "output": f"{i}"} for i in range(1000)]
    rows += [{"messages": [{**chat[0], "content": f"hi {i}"}, chat[1]]} for i in range(later)] + rows[:3]
    path = _data(tmp_path, rows)
    cfg = RunConfig()
    once = tokenize_file(path, cfg, tokenizer, tokenizer.chat_template, cache=True)
    monkeypatch.setattr(loader, "FORMAT_GUESS_RECORDS", 10**9)  # the file's format from all its records first
    twice = tokenize_file(path, cfg, tokenizer, tokenizer.chat_template)
    assert once.load.format == twice.load.format == ("instruction" if later == 300 else "chat")
    assert once.load.issues == twice.load.issues and once.load.format_counts == twice.load.format_counts
    assert once.load.count == twice.load.count == (1003 if later == 300 else later)
    assert once.load.duplicates == twice.load.duplicates and once.tokens == twice.tokens
    mixed = [i for i in once.load.errors if "mixed formats" in i.message]
    assert len(mixed) == min(later, 1003) and f"({max(1003, later)} of {1003 + later} records)" in mixed[0].message
    from datasets import Dataset

    ds = Dataset.from_file(str(once.arrow_path))
    assert len(ds) == once.load.count and ds["line"][0] == (1 if later == 300 else 1001)


def test_several_tokenizing_processes_write_what_one_does(tmp_path, tokenizer, cache, monkeypatch):
    """Big files are tokenized by a pool of processes (forced to 2 here, as on a machine with cores to
    spare): the same ids, stats and refusals, in file order, also when the file is read a second time."""
    from datasets import Dataset

    template = ("{% for m in messages %}{% if m['content'] == 'refuse' %}{{ raise_exception('no') }}{% endif %}"
                "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}")
    rows = [{"instruction": f"Say {i} " * (i % 9 + 1), "output": f"{i} " * (i % 13 + 1)} for i in range(1000)]
    rows += [{"messages": [{"role": "user", "content": "refuse" if i == 5 else f"hi {i}"},
                           {"role": "assistant", "content": f"hello {i}"}]} for i in range(1400)]
    path = _data(tmp_path, rows)
    cfg = RunConfig()
    cfg.model.max_seq_length = 16
    import tui_tuner.data.tokenized as tokenized

    submitted = []
    submit = tokenized._TokenizerPool.submit
    monkeypatch.setattr(tokenized._TokenizerPool, "submit",
                        lambda pool, batch, convs: submitted.append(len(convs)) or submit(pool, batch, convs))
    results = {}
    for processes in ("1", "2"):
        monkeypatch.setenv("TUI_TUNER_TOKENIZE_PROCESSES", processes)
        monkeypatch.setenv("TUI_TUNER_CACHE", str(tmp_path / f"cache-{processes}"))
        results[processes] = tokenize_file(path, cfg, tokenizer, template, cache=True)
    one, two = results["1"], results["2"]
    assert sum(submitted) == 3 * 256 + 1400  # through the pool: full batches of the first reading, then all
    assert one.load.format == "chat" and one.tokens.refused and one.tokens.truncated  # read again as chat
    assert one.tokens == two.tokens and one.load.issues == two.load.issues
    a, b = Dataset.from_file(str(one.arrow_path)), Dataset.from_file(str(two.arrow_path))
    assert len(a) == len(b) == 1399 and a.to_dict() == b.to_dict()


def test_a_tokenizer_the_processes_cannot_load_is_tokenized_in_the_reading_process(tmp_path, tokenizer, cache,
                                                                                  monkeypatch):
    import tui_tuner.data.tokenized as tokenized

    assert tokenized._start_pool(2, lambda: None, 16, True, None) is None  # cannot even be pickled
    # pickled, but the processes fail to load it: the pool is shut and the file tokenized here
    assert tokenized._start_pool(2, _Unloadable(), 16, True, None) is None
    monkeypatch.setenv("TUI_TUNER_TOKENIZE_PROCESSES", "2")
    monkeypatch.setattr(tokenized, "_start_pool", lambda *a: None)
    result = tokenize_file(_data(tmp_path, ROWS), RunConfig(), tokenizer, tokenizer.chat_template, cache=True)
    assert result.load.count == 30 and result.tokens.total_tokens > 0


class _Unloadable:
    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise OSError("the tokenizer files are gone")
