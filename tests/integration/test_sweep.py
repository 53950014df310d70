"""A real two-value sweep: two queued runs of the demo model train one after the other and both finish."""

import sys
import time

import pytest

from tui_tuner.cli import main
from tui_tuner.rundir.experiment_log import records
from tui_tuner.rundir.sweep import create_sweep, plan_sweep, sweep_record

pytestmark = pytest.mark.slow


def test_two_value_sweep_runs_in_order_and_lands_in_the_table(demo_model_dir, tmp_path, capsys):
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "data" / "sample.jsonl"
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(f"""\
model:
  name_or_path: tui-tuner/demo-tiny-llama
  max_seq_length: 64
method: lora
data:
  train: {sample}
  max_samples: 8
training:
  max_steps: 2
  batch_size: 2
  grad_accumulation: 1
  save_steps: 100
  gradient_checkpointing: false
output:
  runs_dir: {tmp_path / 'runs'}
  run_name: sweep
""", encoding="utf-8")
    plan = plan_sweep(cfg, ["lora.r=4,8"])
    assert plan.ok
    runs = create_sweep(plan)
    assert len(runs) == 2
    assert runs[1].status().state == "queued"            # waits for the first
    assert runs[1].status().queued_after == runs[0].name
    # Only read the run folders here: the second run must be started by the first run's
    # supervisor (the engine's queue), not by this process, as after the terminal has closed.
    deadline = time.monotonic() + 480
    while time.monotonic() < deadline and not all(r.status().is_final for r in runs):
        time.sleep(0.5)
    from rich.console import Console

    from tui_tuner.commands.sweep_cmd import wait_and_compare

    assert wait_and_compare(runs, Console(file=sys.stderr, width=100)) == 0   # prints the comparison
    first, second = (r.status() for r in runs)
    assert first.state == second.state == "finished"
    assert first.ended <= second.started                 # one after the other, in order
    assert [sweep_record(r.path)["varied"]["lora.r"] for r in runs] == [4, 8]
    rows = records(runs)
    assert [row["r"] for row in rows] == [4, 8]
    assert all(row["train_loss"] is not None and row["adapter_bytes"] for row in rows)
    # the adapter files the worker wrote are exactly the size the LoRA lab predicts
    from tui_tuner.learn.layout import model_layout
    from tui_tuner.learn.lora_math import lora_report

    layout = model_layout(str(demo_model_dir))
    for row in rows:
        predicted = lora_report(layout, r=row["r"], alpha=row["alpha"]).adapter_bytes
        assert row["adapter_bytes"] in (predicted["float32"], predicted["bfloat16"])
    assert main(["runs", "table", "--runs-dir", str(tmp_path / "runs"), "--markdown"]) == 0
    table = capsys.readouterr().out
    assert runs[0].name in table and runs[1].name in table
