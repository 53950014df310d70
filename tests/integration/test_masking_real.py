"""Loss masks with real tokenizers and the chat templates model authors ship.

Multi-turn conversations with a system prompt: exactly the assistant answers and the end-of-turn
token the template writes after each are trained; the system prompt, the user turns and the
template's headers are not. Reasoning templates train the final answer's thinking block after the
very prompt inference builds. Tokenizers come from the tiny models (llama.cpp's real vocabularies).
"""

from __future__ import annotations

import pytest

from tui_tuner.data import IGNORE_INDEX, encode_prompt, tokenize_conversation

SYSTEM = {"role": "system", "content": "Answer briefly."}
Q1, Q2 = {"role": "user", "content": "How heavy is Bramble?"}, {"role": "user", "content": "And the tank?"}
A1, A2 = "Bramble weighs 4 kilograms.", "It holds 2 litres, Grüße ✓."
MULTI = [SYSTEM, Q1, {"role": "assistant", "content": A1}, Q2, {"role": "assistant", "content": A2}]
THINKING = [SYSTEM, Q1, {"role": "assistant", "content": f"<think>\nFour, the manual says.\n</think>\n\n{A1}"},
            Q2, {"role": "assistant", "content": f"<think>\nTwo litres.\n</think>\n\n{A2}"}]
DEEPSEEK_TOKENS = ["<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>"]


def trained_texts(tokenizer, enc) -> list[str]:
    runs, current = [], []
    for token, label in zip(enc["input_ids"], enc["labels"]):
        if label != IGNORE_INDEX:
            assert label == token
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


def template(llama_cpp_models, name: str) -> str:
    return (llama_cpp_models / "templates" / f"{name}.jinja").read_text(encoding="utf-8")


@pytest.mark.parametrize("family,end", [("llama3", "<|eot_id|>"), ("qwen2.5", "<|im_end|>"), ("phi3", "<|end|>"),
                                        ("gemma", "<turn|>")])
def test_family_trains_exactly_the_answers_and_their_end_of_turn(real_tokenizer, family, end):
    tokenizer = real_tokenizer(family)
    enc = tokenize_conversation(tokenizer, MULTI, 4096, completion_only_loss=True)
    assert trained_texts(tokenizer, enc) == [A1 + end, A2 + end]
    assert tokenizer.convert_tokens_to_ids(end) in enc["labels"]  # the end-of-turn is one real special token
    # everything else (system prompt, user turns, headers) is context only
    untrained = tokenizer.decode([t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab == IGNORE_INDEX])
    assert "Answer briefly." in untrained and "And the tank?" in untrained and A1 not in untrained
    # the final answer follows exactly the prompt inference builds
    prompt = encode_prompt(tokenizer, MULTI[:-1])
    assert enc["input_ids"][: len(prompt)] == prompt
    assert enc["labels"][len(prompt)] != IGNORE_INDEX


def test_weight_zero_answer_is_context_only(real_tokenizer):
    tokenizer = real_tokenizer("llama3")
    conv = [*MULTI[:2], {"role": "assistant", "content": A1, "weight": 0}, *MULTI[3:]]
    enc = tokenize_conversation(tokenizer, conv, 4096, completion_only_loss=True)
    assert trained_texts(tokenizer, enc) == [A2 + "<|eot_id|>"]


def test_qwen3_trains_the_final_thinking_and_drops_earlier_ones_as_inference_does(real_tokenizer, llama_cpp_models):
    tokenizer = real_tokenizer("qwen2.5")  # Qwen3 shares Qwen 2.5's vocabulary
    qwen3 = template(llama_cpp_models, "Qwen-Qwen3-0.6B")
    enc = tokenize_conversation(tokenizer, THINKING, 4096, True, chat_template=qwen3)
    assert trained_texts(tokenizer, enc) == [
        A1 + "<|im_end|>", f"<think>\nTwo litres.\n</think>\n\n{A2}<|im_end|>"]
    text = tokenizer.decode(enc["input_ids"])
    assert "Four, the manual says." not in text  # the template drops earlier turns' thinking, as at inference
    prompt = encode_prompt(tokenizer, THINKING[:-1], chat_template=qwen3)
    assert enc["input_ids"][: len(prompt)] == prompt


@pytest.mark.parametrize("family,name", [("llama3", "deepseek-ai-DeepSeek-R1-Distill-Llama-8B"),
                                         ("qwen2.5", "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B")])
def test_deepseek_r1_distill_trains_thinking_after_the_inference_prompt(real_tokenizer, llama_cpp_models, family,
                                                                        name):
    from transformers import AutoTokenizer

    # the distills' tokenizers are their base family's plus DeepSeek's chat tokens
    tokenizer = AutoTokenizer.from_pretrained(real_tokenizer(family).name_or_path)
    tokenizer.add_special_tokens({"additional_special_tokens": DEEPSEEK_TOKENS})
    r1 = template(llama_cpp_models, name)
    enc = tokenize_conversation(tokenizer, THINKING, 4096, True, chat_template=r1)
    end = "<｜end▁of▁sentence｜>"
    # the template drops every thinking block from a finished conversation; the final answer is
    # trained as the model produces it: after "<｜Assistant｜><think>\n", thinking included
    assert trained_texts(tokenizer, enc) == [A1 + end, f"Two litres.\n</think>\n\n{A2}{end}"]
    prompt = encode_prompt(tokenizer, THINKING[:-1], chat_template=r1, enable_thinking=True)
    assert enc["input_ids"][: len(prompt)] == prompt
    assert tokenizer.decode(prompt).endswith("<｜Assistant｜><think>\n")


def test_gemma4_final_answer_follows_its_generation_prompt(real_tokenizer):
    tokenizer = real_tokenizer("gemma")
    enc = tokenize_conversation(tokenizer, MULTI, 4096, True)
    text = tokenizer.decode(enc["input_ids"])
    # Gemma 4's generation prompt opens an empty thought channel that a finished turn lacks
    assert text.endswith(f"<|turn>model\n<|channel>thought\n<channel|>{A2}<turn|>")


def test_templates_that_refuse_a_conversation_are_data_check_errors(real_tokenizer, llama_cpp_models, tmp_path):
    from tui_tuner.data.report import token_stats

    tokenizer = real_tokenizer("gemma")
    gemma2 = template(llama_cpp_models, "google-gemma-2-2b-it")
    stats = token_stats(tokenizer, [MULTI, MULTI[1:]], [1, 2], 4096, True, gemma2)
    assert [line for line, _ in stats.refused] == [1]
    message = stats.refused[0][1]
    assert '"System role not supported"' in message and "first user turn" in message
    assert stats.trained_tokens > 0  # the example without a system prompt still counts


def test_plain_prompt_completion_uses_no_template(real_tokenizer):
    tokenizer = real_tokenizer("llama3")
    enc = tokenize_conversation(tokenizer, [{"role": "prompt", "content": "Capital of France?"},
                                            {"role": "completion", "content": " Paris."}], 64, True)
    assert tokenizer.decode(enc["input_ids"]) == "<|begin_of_text|>Capital of France? Paris.<|eot_id|>"
    assert trained_texts(tokenizer, enc) == [" Paris.<|eot_id|>"]
