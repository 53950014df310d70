"""One chat template everywhere: training, chat, eval and the Ollama Modelfile render a conversation alike."""

from tests.infer_fixtures import memorised_conversations


def test_training_chat_eval_and_modelfile_agree(loaded_run, memorised_run):
    from tui_tuner.data import tokenize_conversation
    from tui_tuner.inference.evaluate import eval_examples
    from tui_tuner.inference.chat_model import resolve_source
    from tui_tuner.export.modelfile import modelfile_text, parse_modelfile, render_go_template, turn_format
    from tui_tuner.chat_format.templates import render_conversation

    chat = loaded_run
    conv = memorised_conversations()[1] + [{"role": "user", "content": "And in winter?"},
                                           {"role": "assistant", "content": "Also in the Burrow."}]
    prompt = conv[:-1]

    # training: the worker's tokenization, with the template saved in the run's adapter
    train = tokenize_conversation(chat.tokenizer, conv, 1024, True, chat_template=chat.chat_template)
    # chat: what the chat pane and `tui-tuner chat` send to the model
    chat_prompt_ids, dropped, cut = chat.fit_prompt(prompt, 16)
    assert (dropped, cut) == (0, 0)
    assert chat.encode(chat.render(conv, add_generation_prompt=False)) == train["input_ids"]
    assert train["input_ids"][: len(chat_prompt_ids)] == chat_prompt_ids
    # the answer tokens training learned are exactly those that follow the chat prompt
    answer_ids = [t for t in train["labels"][len(chat_prompt_ids):] if t != -100]
    assert chat.tokenizer.decode(answer_ids, skip_special_tokens=True).strip() == conv[-1]["content"]

    # eval: reads the held-out file through the data loader and prompts with everything before the answer
    examples, _, _ = eval_examples(resolve_source(memorised_run), memorised_run / "memorised.jsonl")
    assert examples[1] == memorised_conversations()[1]
    assert chat.fit_prompt(examples[1][:-1], 16)[0] == chat.encode(
        render_conversation(chat.tokenizer, examples[1][:-1], True, chat_template=chat.chat_template))

    # Ollama: the Modelfile's Go TEMPLATE renders the same prompt text (llama.cpp adds BOS itself)
    fmt = turn_format(lambda m, g: render_conversation(chat.tokenizer, m, g, chat_template=chat.chat_template),
                      bos_token=chat.tokenizer.bos_token)
    parsed = parse_modelfile(modelfile_text("x.gguf", fmt, eos_token=chat.tokenizer.eos_token))
    assert fmt.head + render_go_template(parsed["template"], prompt, system=parsed.get("system")) == chat.render(prompt)
