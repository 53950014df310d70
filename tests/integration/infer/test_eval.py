"""`tui-tuner eval`: loss, perplexity and scored answers, tuned vs base, report saved in the run."""

import json
import math
import subprocess
import sys

from tests.infer_fixtures import MEMORISED


def test_memorised_answers_score_perfectly_and_beat_the_base(loaded_run, memorised_run):
    from tui_tuner.inference.evaluate import eval_examples, evaluate, report_markdown, save_report

    examples, lines, label = eval_examples(loaded_run.source, memorised_run / "memorised.jsonl")
    assert lines == [1, 2]
    report = evaluate(loaded_run, examples, lines, label, compare_base=True)
    tuned, base = report.models["tuned"], report.models["base"]
    assert tuned.exact_match == 1.0 and tuned.token_f1 == 1.0 and tuned.rouge_l == 1.0
    assert tuned.possible_hallucinations == 0
    assert base.exact_match == 0.0 and base.token_f1 < 0.5
    assert tuned.loss < base.loss and math.isclose(tuned.perplexity, math.exp(tuned.loss))
    assert tuned.loss_tokens == base.loss_tokens > 0
    assert [p.reference for p in report.prompts] == [a for _, a in MEMORISED]
    assert report.prompts[0].answers["tuned"].answer == MEMORISED[0][1]

    json_path, md_path = save_report(report, loaded_run.source)
    assert json_path.parent == memorised_run / "eval"
    saved = json.loads(json_path.read_text())
    assert saved["models"]["tuned"]["exact_match"] == 1.0
    md = md_path.read_text()
    assert "| exact match | 1.000 |" in md and MEMORISED[1][1] in md
    assert md == report_markdown(report)


def test_heldout_loss_matches_a_hand_computed_cross_entropy(loaded_run):
    import torch

    from tests.infer_fixtures import memorised_conversations
    from tui_tuner.data import tokenize_conversation
    from tui_tuner.inference.evaluate import heldout_loss

    conv = memorised_conversations()[0]
    loss, n = heldout_loss(loaded_run, [conv])
    enc = tokenize_conversation(loaded_run.tokenizer, conv, 1024, True, chat_template=loaded_run.chat_template)
    with torch.no_grad():
        logits = loaded_run.model(torch.tensor([enc["input_ids"]])).logits[0, :-1]
    targets = torch.tensor(enc["labels"][1:])
    keep = targets != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
    assert n == int(keep.sum()) and math.isclose(loss, float(expected), rel_tol=1e-5)


def test_eval_split_is_the_share_training_held_out(memorised_run, tmp_path):
    from tui_tuner.config.schema import RunConfig
    from tui_tuner.inference.evaluate import eval_examples
    from tui_tuner.inference.chat_model import resolve_source

    source = resolve_source(memorised_run)
    cfg = RunConfig.model_validate({**source.config.model_dump(), "data": {**source.config.data.model_dump(),
                                                                          "eval_split": 0.2}})
    source.config = cfg
    examples, lines, label = eval_examples(source)
    assert len(examples) == round(52 * 0.2) and "held out" in label
    import random

    order = list(range(52))
    random.Random(cfg.training.seed).shuffle(order)  # the training worker's split
    assert sorted(lines) == sorted(i + 1 for i in order[: len(examples)])


def test_eval_cli_on_a_checkpoint(memorised_run):
    done = subprocess.run([sys.executable, "-m", "tui_tuner", "eval", str(memorised_run), "--checkpoint", "4",
                           "--data", str(memorised_run / "memorised.jsonl"), "--limit", "1", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["source"].endswith("checkpoint-4") and len(report["prompts"]) == 1
    assert list((memorised_run / "eval").glob("eval-*-checkpoint-4.md"))


def test_eval_cli_bad_data_is_a_clear_error(memorised_run, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "hi", "output": "there"}\n{not json\n')
    done = subprocess.run([sys.executable, "-m", "tui_tuner", "eval", str(memorised_run), "--data", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "bad.jsonl" in done.stderr and "Traceback" not in done.stderr, done.stderr
