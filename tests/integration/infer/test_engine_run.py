"""Chat, eval and export on a run trained by tui-tuner's own training worker (the `finished_run` fixture)."""

import pytest

from tui_tuner.inference.chat_model import GenerationSettings, load_chat_model, resolve_source

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine_chat(finished_run):
    return load_chat_model(resolve_source(finished_run.path))


def test_streams_tokens_from_a_trained_run_with_its_saved_template(engine_chat, finished_run):
    assert engine_chat.source.kind == "run" and engine_chat.has_adapter
    assert engine_chat.chat_template == (finished_run.adapter_dir / "chat_template.jinja").read_text()
    stream = engine_chat.stream([{"role": "user", "content": "What is Bramble?"}],
                                GenerationSettings(temperature=0, max_new_tokens=24))
    pieces = list(stream)
    result = stream.result()
    assert pieces and result.new_tokens > 0 and result.text == "".join(pieces).strip()
    assert result.finish_reason in ("eos", "length")


def test_every_checkpoint_chats(finished_run):
    from tui_tuner.inference.chat_model import run_checkpoints

    checkpoints = run_checkpoints(finished_run.path)
    assert [p.name for p in checkpoints] == [p.name for p in finished_run.checkpoints()]
    for folder in checkpoints:
        step = int(folder.name.rsplit("-", 1)[1])
        source = resolve_source(finished_run.path, checkpoint=step)
        chat = load_chat_model(source)
        result = chat.answer([{"role": "user", "content": "Who makes Bramble?"}],
                             GenerationSettings(temperature=0, max_new_tokens=8))
        assert result.error is None and result.new_tokens > 0


def test_eval_defaults_to_the_runs_eval_file(engine_chat):
    from tui_tuner.inference.evaluate import eval_examples, evaluate

    examples, lines, label = eval_examples(engine_chat.source)
    assert label.endswith("heldout.jsonl") and len(examples) == 8
    report = evaluate(engine_chat, examples, lines, label, compare_base=True, limit=2,
                      settings=GenerationSettings(temperature=0, max_new_tokens=16, repetition_penalty=1.0))
    tuned, base = report.models["tuned"], report.models["base"]
    assert tuned.answered == base.answered == 2
    assert tuned.loss < base.loss  # 20 steps on the Bramble facts beat random weights on Bramble questions
