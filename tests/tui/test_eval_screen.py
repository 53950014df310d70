"""Runs → e: the Eval view of a real finished run — a saved report, running `tui-tuner eval`, and its failure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console
from textual.widgets import DataTable, Static

from tests.tui.conftest import make_fake_run, wait_until
from tui_tuner.tui.app import build_app


def _plain(renderable) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def copy_run(run, runs_dir: Path):
    """A copy of the session's finished run (tests must not write into the shared one)."""
    from tui_tuner.rundir.runs import RunDir

    dest = runs_dir / run.name
    shutil.copytree(run.path, dest)
    return RunDir(dest)


async def wait_for(pilot, condition, seconds: float = 30.0) -> bool:
    for _ in range(int(seconds / 0.1)):
        if condition():
            return True
        await pilot.pause(0.1)
    return condition()


async def open_eval(pilot, app):
    from tui_tuner.tui.screens.eval import EvalScreen

    assert await wait_for(pilot, lambda: app.screen.query_one(DataTable).row_count >= 1)
    await pilot.press("e")
    assert await wait_for(pilot, lambda: isinstance(app.screen, EvalScreen))
    return app.screen


@pytest.fixture(scope="module")
def evaluated_run(finished_run, tmp_path_factory):
    """A copy of the finished run with a tuned-vs-base report made by the real evaluation functions."""
    from tui_tuner.inference.evaluate import eval_examples, evaluate, save_report
    from tui_tuner.inference.chat_model import load_chat_model, resolve_source

    run = copy_run(finished_run, tmp_path_factory.mktemp("eval-runs"))
    source = resolve_source(run.path)
    examples, lines, label = eval_examples(source)
    chat = load_chat_model(source)
    report = evaluate(chat, examples, lines, label, compare_base=True, limit=4)
    save_report(report, source)
    return run, report


async def test_report_shows_summary_prompts_and_the_selected_answers(evaluated_run):
    run, report = evaluated_run
    app = build_app(project_dir=run.path.parent, runs_dir=run.path.parent, offer_reattach=False, start_screen="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        assert "eval" in {b.action for _, b, enabled, _ in app.screen.active_bindings.values() if b.show}
        screen = await open_eval(pilot, app)
        assert await wait_for(pilot, lambda: screen.report is not None)
        await pilot.pause()
        summary = _plain(screen.query_one("#eval-summary", Static).content)
        tuned, base = report.models["tuned"], report.models["base"]
        tuned_line = next(ln for ln in summary.splitlines() if ln.strip().startswith("tuned"))
        base_line = next(ln for ln in summary.splitlines() if ln.strip().startswith("base"))
        assert f"{tuned.loss:.3f}" in tuned_line and f"{base.loss:.3f}" in base_line
        assert f"{tuned.perplexity:.2f}" in tuned_line and f"{tuned.token_f1:.3f}" in tuned_line
        assert f"{tuned.possible_hallucinations} / {tuned.answered}" in tuned_line and "flagged" in summary

        table = screen.query_one("#eval-prompts", DataTable)
        assert table.row_count == len(report.prompts) == 4
        for i, prompt in enumerate(report.prompts):
            flags = str(table.get_cell(str(prompt.index), "flags"))
            for model in ("tuned", "base"):
                assert (model in flags) == prompt.answers[model].possible_hallucination
        await pilot.press("down")
        await pilot.pause()
        detail = _plain(screen.query_one("#eval-detail", Static).content)
        second = report.prompts[1]
        assert " ".join(second.reference.split()) in " ".join(detail.split())
        for model in ("tuned", "base"):
            answer = second.answers[model]
            assert f"F1 {answer.token_f1:.2f}" in detail
            assert ("possible hallucination" in detail) == any(a.possible_hallucination for a in second.answers.values())
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen")


def test_flagged_answer_is_marked_in_its_row_and_detail():
    from tui_tuner.inference.evaluate import EvalReport, ModelSummary, PromptEval, ScoredAnswer
    from tui_tuner.inference.metrics import score_answer
    from tui_tuner.tui import eval_view

    score = score_answer("Bramble weighs 7 kilograms.", "Bramble weighs 4 kilograms.", "How heavy is Bramble?")
    assert score.possible_hallucination
    answer = ScoredAnswer("Bramble weighs 7 kilograms.", score.exact_match, score.token_f1, score.rouge_l, True,
                          score.hallucination_reason, 6, "eos")
    prompt = PromptEval(0, 1, "How heavy is Bramble?", "Bramble weighs 4 kilograms.", {"tuned": answer})
    report = EvalReport("run", "heldout.jsonl", 1, "2026-01-01T00:00:00", {},
                        {"tuned": ModelSummary(1.0, 2.7, 10, 0.0, 0.75, 0.75, 1, 1)}, [prompt])
    cells = eval_view.prompt_cells(report, prompt, 30)
    assert "⚠" in str(cells[-1]) and "tuned" in str(cells[-1])
    detail = eval_view.prompt_detail(report, prompt).plain
    assert "⚠ possible hallucination" in detail and "7" in detail
    assert "⚠ 1 / 1" in _plain(eval_view.summary_table(report))


@pytest.mark.slow
async def test_no_report_runs_tui_tuner_eval_and_shows_the_result(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "runs")
    short = tmp_path / "two.jsonl"  # two prompts keep the subprocess short
    heldout = Path(__file__).resolve().parents[2] / "data" / "heldout.jsonl"
    short.write_text("".join(heldout.read_text().splitlines(keepends=True)[:2]))
    config = run.path / "config.yaml"
    config.write_text(config.read_text().replace(str(heldout), str(short)))
    assert str(short) in config.read_text()

    app = build_app(project_dir=tmp_path, runs_dir=tmp_path / "runs", offer_reattach=False, start_screen="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_eval(pilot, app)
        message = screen.query_one("#eval-message", Static)
        assert await wait_for(pilot, lambda: "no evaluation report" in str(message.render()))
        assert not screen.query_one("#eval-report").display
        statuses = []
        set_status = screen._set_status
        screen._set_status = lambda text: (statuses.append(text.plain), set_status(text))
        await pilot.press("b")  # tuned only
        await pilot.press("r")
        assert await wait_for(pilot, lambda: screen.report is not None, seconds=300), statuses
        assert any("answering" in s for s in statuses)  # progress lines reached the screen
        assert screen.query_one("#eval-report").display
        assert screen.query_one("#eval-prompts", DataTable).row_count == 2
        saved = json.loads(next((run.path / "eval").glob("eval-*.json")).read_text())
        assert list(saved["models"]) == ["tuned"] and saved["examples"] == 2


async def test_a_failed_evaluation_shows_the_commands_error(project):
    make_fake_run(project / "runs", "no-adapter", 3)  # finished, but no adapter or checkpoint to load
    app = build_app(project_dir=project, runs_dir=project / "runs", offer_reattach=False, start_screen="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_eval(pilot, app)
        assert await wait_for(pilot, lambda: "no evaluation report" in str(screen.query_one("#eval-message").render()))
        await pilot.press("r")
        status = screen.query_one("#eval-status", Static)
        assert await wait_for(pilot, lambda: "failed" in str(status.render()), seconds=120)
        text = str(status.render())
        assert "exit status 2" in text and "error:" in text
        assert not screen.running and screen.report is None


def _pair_item(line, prompt, chosen_logp, rejected_logp):
    return {"line": line, "prompt": prompt, "chosen": "Bramble weighs 4 kilograms.", "rejected": "It sings opera.",
            "chosen_logp": chosen_logp, "rejected_logp": rejected_logp, "margin": round(chosen_logp - rejected_logp, 3)}


def test_objective_report_summary_rows_and_detail_share_the_markdown_reports_tables():
    from tui_tuner.inference.evaluate import EvalReport, report_markdown
    from tui_tuner.inference.objective_eval import example_table
    from tui_tuner.tui import eval_view

    section = {"objective": "dpo", "headline": "preference_accuracy", "models": {
        "tuned": {"preference_accuracy": 1.0, "mean_margin": 2.5, "pairs": 2,
                  "items": [_pair_item(3, "How much does Bramble weigh?", -10.0, -14.0), _pair_item(5, "Who?", -8.0, -9.0)]},
        "base": {"preference_accuracy": 0.5, "mean_margin": -0.5, "pairs": 2,
                 "items": [_pair_item(3, "How much does Bramble weigh?", -12.0, -11.0), _pair_item(5, "Who?", -9.0, -9.0)]}}}
    summary = _plain(eval_view.objective_summary(section))
    assert "preference accuracy: the share of held-out pairs" in summary  # what the number means, one line
    accuracy = next(ln for ln in summary.splitlines() if ln.strip().startswith("preference accuracy "))
    assert accuracy.split()[-2:] == ["1.000", "0.500"]
    assert "pairs" in summary and "2.500" in summary

    labels, rows = eval_view.objective_rows(section, prompt_width=12)
    assert labels == ["line", "prompt", "tuned margin", "base margin"]
    assert [str(c) for c in rows[0]] == ["3", "How much do…", "4.00", "-1.00"]
    assert rows[0][3].style == "red"  # the base prefers the rejected answer
    detail = eval_view.objective_detail(section, 0).plain
    assert "line 3" in detail and "Bramble weighs 4 kilograms." in detail and "It sings opera." in detail
    assert "chosen logp -10.00 · rejected logp -14.00 · margin 4.00" in detail and "margin -1.00" in detail

    # the markdown report lays out the same rows
    report = EvalReport("run", "pairs.jsonl", 2, "2026-01-01T00:00:00", {}, objective=section)
    markdown = report_markdown(report)
    assert "| preference accuracy | 1.000 | 0.500 |" in markdown
    assert "| " + " | ".join(example_table(section)[1][1]) + " |" in markdown

    # a report written before per-example items were saved still shows its scores, and no rows
    for model in section["models"].values():
        del model["items"]
    assert eval_view.objective_rows(section, 40) == ([], [])
    assert "1.000" in _plain(eval_view.objective_summary(section))


def test_grpo_and_kto_rows_show_rewards_per_answer_and_labels():
    from tui_tuner.tui import eval_view

    grpo = {"objective": "grpo", "headline": "mean_reward", "models": {"tuned": {
        "mean_reward": 0.75, "rewards/format": 0.5, "prompts": 1,
        "items": [{"line": 1, "prompt": "What is 2+2?", "answer": "<think>add</think> 4",
                   "rewards": {"format": 1.0, "numeric_match": 0.5}, "total": 1.5}]}}}
    labels, rows = eval_view.objective_rows(grpo, 40)
    assert labels == ["line", "prompt", "tuned reward"] and [str(c) for c in rows[0]] == ["1", "What is 2+2?", "1.50"]
    detail = eval_view.objective_detail(grpo, 0).plain
    assert "<think>add</think> 4" in detail and "total 1.50 · format 1.00 · numeric_match 0.50" in detail
    assert "rewards/format" in _plain(eval_view.objective_summary(grpo))

    kto = {"objective": "kto", "headline": "desirability_margin", "models": {"tuned": {
        "desirable_logp": None, "undesirable_logp": -2.0, "desirability_margin": None, "desirable": 0,
        "undesirable": 1, "items": [{"line": 2, "prompt": "Hi", "completion": "Go away.", "label": "undesirable",
                                     "logp_per_token": -2.0}]}}}
    labels, rows = eval_view.objective_rows(kto, 40)
    assert labels == ["line", "prompt", "label", "tuned logp/tok"] and [str(c) for c in rows[0]] == ["2", "Hi", "undesirable", "-2.00"]
    summary = _plain(eval_view.objective_summary(kto))
    assert "desirability margin: desirable answers' mean log-probability per token" in summary and "–" in summary
    assert "completion (undesirable)" in eval_view.objective_detail(kto, 0).plain


@pytest.fixture(scope="module")
def dpo_project(demo_model_dir, tmp_path_factory):
    """A project with one DPO run of the demo model (two steps), its held-out pairs in data.eval."""
    import os
    import subprocess
    import sys

    import yaml

    repo = Path(__file__).resolve().parents[2]
    root = tmp_path_factory.mktemp("dpo-eval")
    shutil.copytree(repo / "data", root / "data")
    config = {"model": {"name_or_path": "tui-tuner/demo-tiny-llama", "dtype": "float32", "max_seq_length": 128},
              "objective": "dpo", "method": "lora", "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
              "data": {"train": "data/preference_sample.jsonl", "eval": "data/preference_heldout.jsonl"},
              "training": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-3, "gradient_checkpointing": False,
                           "logging_steps": 1, "save_steps": 100},
              "output": {"run_name": "dpo-eval"}, "backend": "transformers"}
    (root / "dpo.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([sys.executable, "-m", "tui_tuner", "train", "dpo.yaml"], cwd=root, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(repo)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


@pytest.mark.slow
async def test_dpo_run_evaluates_and_shows_preference_accuracy_tuned_vs_base(dpo_project):
    heldout = (dpo_project / "data" / "preference_heldout.jsonl").read_text().splitlines()
    app = build_app(project_dir=dpo_project, runs_dir=dpo_project / "runs", offer_reattach=False, start_screen="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_eval(pilot, app)
        message = screen.query_one("#eval-message", Static)
        assert await wait_until(pilot, lambda: "no evaluation report" in str(message.render()))
        assert "preference accuracy" in str(message.render())  # says what the evaluation measures
        statuses = []
        set_status = screen._set_status
        screen._set_status = lambda text: (statuses.append(text.plain), set_status(text))
        await pilot.press("r")  # with the base model (the default)
        assert await wait_until(pilot, lambda: screen.report is not None, timeout=300), statuses
        assert any("tuned: pair" in s for s in statuses) and any("base: pair" in s for s in statuses)

        saved = json.loads(next((dpo_project / "runs").glob("*/eval/eval-*.json")).read_text())
        models = saved["objective"]["models"]
        assert list(models) == ["tuned", "base"] and models["tuned"]["pairs"] == len(heldout)
        summary = _plain(screen.query_one("#eval-summary", Static).content)
        assert "preference accuracy: the share of held-out pairs" in summary
        accuracy = next(ln for ln in summary.splitlines() if ln.strip().startswith("preference accuracy "))
        assert accuracy.split()[-2:] == [f"{models[m]['preference_accuracy']:.3f}" for m in ("tuned", "base")]

        table = screen.query_one("#eval-prompts", DataTable)
        assert table.row_count == len(heldout)
        second = models["tuned"]["items"][1]
        assert str(table.get_cell("1", "c2")) == f"{second['margin']:.2f}"  # tuned margin
        assert str(table.get_cell("1", "c3")) == f"{models['base']['items'][1]['margin']:.2f}"
        await pilot.press("down")
        detail = screen.query_one("#eval-detail", Static)
        assert await wait_until(pilot, lambda: second["chosen"] in " ".join(_plain(detail.content).split()))
        assert f"chosen logp {second['chosen_logp']:.2f} · rejected logp {second['rejected_logp']:.2f} · " \
               f"margin {second['margin']:.2f}" in _plain(detail.content)
        assert json.loads(heldout[1])["rejected"] in " ".join(_plain(detail.content).split())
