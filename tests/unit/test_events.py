"""events.jsonl: per-line appends, incremental reads from a byte offset, torn tails, resume supersession."""

from __future__ import annotations

import json

from tui_tuner.rundir.events import EventTail, EventWriter, RunHistory, load_history, read_events


def test_reader_returns_complete_lines_and_only_new_bytes(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as w:
        w.write("log", step=1, loss=2.0)
        w.write("log", step=2, loss=1.5)
    events, off = read_events(path, 0)
    assert [e["step"] for e in events] == [1, 2]
    assert off == path.stat().st_size
    again, off2 = read_events(path, off)
    assert again == [] and off2 == off
    with EventWriter(path) as w:
        w.write("log", step=3, loss=1.0)
    new, off3 = read_events(path, off)
    assert [e["step"] for e in new] == [3] and off3 == path.stat().st_size


def test_unterminated_last_line_is_not_consumed(tmp_path):
    path = tmp_path / "events.jsonl"
    full = json.dumps({"kind": "log", "step": 1}) + "\n"
    torn = '{"kind": "log", "st'
    path.write_text(full + torn)
    events, off = read_events(path, 0)
    assert [e["step"] for e in events] == [1]
    assert off == len(full.encode())
    # the writer finishes the line later: the reader picks it up whole
    with open(path, "a") as fh:
        fh.write('ep": 2}\n')
    events, off = read_events(path, off)
    assert [e["step"] for e in events] == [2]


def test_writer_terminates_a_torn_tail_and_reader_skips_it(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"kind": "log", "step": 1}) + "\n" + '{"kind": "log", "step": 2, "lo')
    with EventWriter(path) as w:  # a resumed worker
        w.write("resume", from_step=1)
        w.write("log", step=2, loss=0.5)
    events, off = read_events(path, 0)
    assert [e["kind"] for e in events] == ["log", "resume", "log"]
    assert off == path.stat().st_size
    assert path.read_text().count("\n") == 4


def test_missing_file_and_replaced_file(tmp_path):
    path = tmp_path / "events.jsonl"
    assert read_events(path, 0) == ([], 0)
    path.write_text("".join(json.dumps({"kind": "log", "step": s, "loss": 3.0 - s}) + "\n" for s in (1, 2)))
    tail = EventTail(path)
    tail.poll()
    assert len(tail.history.logs) == 2
    path.write_text(json.dumps({"kind": "log", "step": 1, "loss": 9.0}) + "\n")  # shorter: replaced
    tail.poll()
    assert tail.history.losses == [(1, 9.0)]


def test_resume_supersedes_steps_after_the_checkpoint():
    hist = RunHistory()
    hist.add([{"kind": "log", "step": s, "loss": 10 - s} for s in range(1, 8)])
    hist.add([{"kind": "checkpoint", "step": 5}, {"kind": "eval", "step": 6, "eval_loss": 1.0}])
    hist.add([{"kind": "resume", "from_step": 5}])
    hist.add([{"kind": "log", "step": s, "loss": 20 - s} for s in range(6, 9)])
    steps = [s for s, _ in hist.losses]
    assert steps == list(range(1, 9))  # no duplicated, no lost steps
    assert dict(hist.losses)[6] == 14  # the resumed run's value wins
    assert [c["step"] for c in hist.checkpoints] == [5]
    assert hist.evals == []


def test_max_bytes_limits_one_read(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as w:
        for s in range(100):
            w.write("log", step=s)
    events, off = read_events(path, 0, max_bytes=500)
    assert 0 < len(events) < 100 and off < path.stat().st_size
    assert len(load_history(path).logs) == 100


def test_nan_loss_is_written_as_valid_json(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as w:
        w.write("log", step=1, loss=None, nonfinite=True)
    assert read_events(path, 0)[0][0]["nonfinite"] is True


def test_prepare_events_describe_the_work_before_the_first_step(tmp_path):
    from tui_tuner.rundir.events import PrepareRate, prepare_text

    path = tmp_path / "events.jsonl"
    rate = PrepareRate()
    rate.fields("tokenizing", 0, 10_000)
    rate.began -= 2.0  # two seconds into tokenizing
    fields = rate.fields("tokenizing", 3_000, 10_000)
    assert 1400 < fields["rate"] <= 1500 and 4.6 < fields["eta_s"] < 5.0  # 3,000 rows in 2 s (and a bit)
    fields.update(rate=1500.0, eta_s=4.7)
    assert prepare_text(fields) == "tokenizing 3,000 of 10,000 rows · 1,500 rows/s · ETA 0:05"
    assert prepare_text({"what": "loading the model", "done": None}) == "loading the model"
    with EventWriter(path) as w:
        w.write("prepare", **rate.fields("loading the model"))
        w.write("prepare", **fields)
    tail = EventTail(path)
    tail.poll()
    assert tail.history.prepare["done"] == 3_000
    with EventWriter(path) as w:
        w.write("train_begin", step=0, max_steps=10)
    tail.poll()
    assert tail.history.prepare is None  # training began: nothing is being prepared any more
