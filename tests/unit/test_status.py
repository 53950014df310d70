"""status.json: atomic writes, round trips, unknown keys kept, OOM recognition."""

from __future__ import annotations

import json

import pytest

from tui_tuner.rundir.status import RunStatus, StatusKeeper, is_oom_message, read_status, write_status


def test_round_trip_keeps_unknown_keys(tmp_path):
    write_status(tmp_path, {"state": "running", "pid": 12, "future_field": [1, 2]})
    st = read_status(tmp_path)
    assert st.state == "running" and st.pid == 12 and st.extra == {"future_field": [1, 2]}
    write_status(tmp_path, st)
    assert json.loads((tmp_path / "status.json").read_text())["future_field"] == [1, 2]


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    for step in range(50):
        write_status(tmp_path, RunStatus(state="running", step=step))
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]
    assert read_status(tmp_path).step == 49


def test_unknown_state_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown run state"):
        write_status(tmp_path, {"state": "done"})


def test_missing_and_corrupt(tmp_path):
    assert read_status(tmp_path) is None
    (tmp_path / "status.json").write_text("{not json")
    st = read_status(tmp_path)
    assert st.state == "unreadable" and "not valid JSON" in st.error and "runs rm" in st.hint


def test_keeper_throttles_unforced_writes(tmp_path):
    keeper = StatusKeeper(tmp_path, RunStatus(state="running"), min_interval_s=60)
    keeper.update(step=1)
    keeper.update(force=False, step=2)
    assert read_status(tmp_path).step == 1
    keeper.update(step=3)
    assert read_status(tmp_path).step == 3


@pytest.mark.parametrize("text, oom", [
    ("CUDA out of memory. Tried to allocate 2.00 GiB", True),
    ("torch.OutOfMemoryError: ...", True),
    ("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried", True),
    ("RuntimeError: OOM when allocating tensor", True),
    ("no room left for the logits", False),
    ("shape mismatch", False),
])
def test_oom_messages(text, oom):
    assert is_oom_message(text) is oom
