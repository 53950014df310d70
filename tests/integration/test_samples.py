"""Sample answers while training: the worker answers the `samples:` prompts at each eval and
checkpoint step with the model being trained, stores them as events, and `runs show` prints them."""

from __future__ import annotations

import subprocess
import sys

from tui_tuner.commands.runs_cmd import sample_events
from tui_tuner.config.schema import SamplesConfig
from tui_tuner.train.samples import sample_prompts


def test_prompts_come_from_the_config_then_the_eval_set():
    eval_examples = [
        [{"role": "text", "content": "no question here"}],
        [{"role": "user", "content": "How heavy is Bramble?"}, {"role": "assistant", "content": "4 kilograms."}],
        [{"role": "user", "content": "Where does Bramble sleep?"}, {"role": "assistant", "content": "The Burrow."}],
    ]
    prompts = sample_prompts(SamplesConfig(prompts=["Say hi"], from_eval=1), eval_examples, "Be brief.")
    assert [p.prompt for p in prompts] == ["Say hi", "How heavy is Bramble?"]
    assert prompts[0].messages[0] == {"role": "system", "content": "Be brief."} and prompts[0].reference is None
    assert prompts[1].reference == "4 kilograms." and prompts[1].messages[-1]["role"] == "user"
    assert not SamplesConfig().enabled and SamplesConfig(from_eval=2).enabled


def test_finished_run_answered_the_samples_at_each_eval_and_checkpoint(finished_run):
    samples = sample_events(finished_run)
    # eval and checkpoint every 10 steps of 20: answered once a step, at 10 and 20
    assert [e["step"] for e in samples] == [10, 20]
    for event in samples:
        assert len(event["answers"]) == 2 and event["seconds"] >= 0 and event["new_tokens"] > 0
        for answer in event["answers"]:
            assert answer["prompt"] and answer["reference"]
            assert isinstance(answer["answer"], str)
    show = subprocess.run([sys.executable, "-m", "tui_tuner", "runs", "show", finished_run.name,
                           "--runs-dir", str(finished_run.path.parent)], capture_output=True, text=True, timeout=120)
    assert show.returncode == 0, show.stderr
    assert "samples" in show.stdout and "2 prompts at 2 steps" in show.stdout
    assert "step    10" in show.stdout and "step    20" in show.stdout
    assert samples[0]["answers"][0]["prompt"] in show.stdout
