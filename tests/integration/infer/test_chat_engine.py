"""Loading runs, checkpoints and outside adapters, and streaming answers with or without the adapter."""

import threading

import pytest

from tests.infer_fixtures import MEMORISED, SYSTEM
from tui_tuner.inference.chat_model import GenerationSettings, SourceError, load_chat_model, resolve_source

GREEDY = GenerationSettings(temperature=0, max_new_tokens=24, repetition_penalty=1.0, system_prompt=SYSTEM)


def ask(question):
    return [{"role": "user", "content": question}]


def test_streams_the_memorised_answer_piece_by_piece(loaded_run):
    question, answer = MEMORISED[0]
    stream = loaded_run.stream(ask(question), GREEDY)
    pieces = list(stream)
    result = stream.result()
    assert len(pieces) > 1
    assert result.text == answer
    assert result.finish_reason == "eos"
    assert result.new_tokens >= len(pieces) and result.first_token_s is not None


def test_base_and_tuned_answer_differently_from_the_same_weights(loaded_run):
    question, answer = MEMORISED[1]
    tuned = loaded_run.answer(ask(question), GREEDY, use_adapter=True)
    base = loaded_run.answer(ask(question), GREEDY, use_adapter=False)
    assert tuned.text == answer
    assert base.text != tuned.text
    # the adapter is back on after the base answer
    assert loaded_run.answer(ask(question), GREEDY).text == answer


def test_base_mode_really_runs_the_base_weights(loaded_run, demo_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(demo_model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([loaded_run.encode(loaded_run.render(ask(MEMORISED[0][0])))])
    with torch.no_grad():
        expected = plain(ids).logits
        with loaded_run.adapter(False):
            base = loaded_run.model(ids).logits
        tuned = loaded_run.model(ids).logits
    torch.testing.assert_close(base, expected)
    assert not torch.allclose(tuned, expected, atol=1e-3)


def test_stop_event_cancels_mid_generation(loaded_run):
    stop = threading.Event()
    settings = GenerationSettings(temperature=1.0, max_new_tokens=400, seed=0)
    stream = loaded_run.stream(ask("Tell me everything."), settings, stop_event=stop)
    seen = 0
    for _ in stream:
        seen += 1
        if seen == 3:
            stream.stop()
    result = stream.result()
    assert result.finish_reason in ("stopped", "eos")
    assert result.new_tokens < 400


def test_long_conversation_is_truncated_and_says_so(loaded_run):
    long_turns = []
    for i in range(40):
        long_turns += [{"role": "user", "content": f"Tell me fact number {i} about the garden. " * 3},
                       {"role": "assistant", "content": "Bramble waters the plants every morning. " * 3}]
    conv = [{"role": "system", "content": SYSTEM}] + long_turns + ask(MEMORISED[0][0])
    ids, dropped, cut = loaded_run.fit_prompt(conv, 64)
    assert dropped > 0 and dropped % 2 == 0 and cut == 0
    assert len(ids) <= loaded_run.context_length - 64
    result = loaded_run.answer(conv, GenerationSettings(temperature=0, max_new_tokens=8))
    assert "oldest message" in result.truncation_note


def test_checkpoint_can_be_chatted_with(memorised_run):
    source = resolve_source(memorised_run, checkpoint=4)
    assert source.kind == "checkpoint" and source.checkpoint_name == "checkpoint-4"
    assert resolve_source(memorised_run / "checkpoints" / "checkpoint-4").adapter_dir == source.adapter_dir
    chat = load_chat_model(source)
    assert chat.answer(ask(MEMORISED[0][0]), GREEDY).finish_reason in ("eos", "length")
    with pytest.raises(SourceError, match="no checkpoint 5"):
        resolve_source(memorised_run, checkpoint=5)


def test_adapter_made_without_tui_tuner_loads_and_chats(external_adapter, demo_model_dir):
    source = resolve_source(external_adapter)
    assert source.kind == "adapter" and source.run_dir is None
    assert source.tokenizer_dir == str(demo_model_dir)  # the adapter has no tokenizer: the base's
    chat = load_chat_model(source)
    result = chat.answer(ask(MEMORISED[0][0]), GREEDY)
    assert result.text == MEMORISED[0][1]


def test_not_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="neither a run directory"):
        resolve_source(tmp_path)


def test_unsloth_path_is_chosen_only_for_unsloth_runs_on_cuda(memorised_run):
    import torch

    from tui_tuner.inference.chat_model import use_unsloth

    source = resolve_source(memorised_run)
    assert use_unsloth(source) == (False, "the run did not train with Unsloth")
    source.backend = "unsloth"
    fast, why = use_unsloth(source)
    assert not fast and "process-wide" in why  # a shared process (the TUI) keeps plain transformers
    fast, why = use_unsloth(source, own_process=True)
    if not torch.cuda.is_available():
        assert (fast, why) == (False, "no CUDA GPU")


@pytest.mark.gpu
def test_unsloth_fast_inference_answers_like_transformers(memorised_run):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: Unsloth's fast inference path only runs there")
    pytest.importorskip("unsloth", reason="the gpu extra (unsloth) is not installed")
    source = resolve_source(memorised_run)
    source.backend = "unsloth"
    chat = load_chat_model(source, own_process=True)
    assert "Unsloth fast inference" in chat.notes
    assert chat.answer(ask(MEMORISED[0][0]), GREEDY).text == MEMORISED[0][1]


def test_qlora_run_is_4bit_only_where_bitsandbytes_has_cuda(memorised_run):
    import torch

    from tui_tuner.inference.chat_model import quantization_plan

    source = resolve_source(memorised_run)
    assert quantization_plan(source, None) == (None, "")  # a LoRA run: 16/32-bit as trained
    source.config = source.config.model_copy(update={"method": "qlora"})
    quant, note = quantization_plan(source, None)
    if torch.cuda.is_available():
        assert quant.load_in_4bit and quant.bnb_4bit_quant_type == "nf4"
    else:
        assert quant is None and "CUDA" in note
