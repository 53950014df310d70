"""The Modelfile's Go template renders conversations exactly like the Jinja chat template."""

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tui_tuner.export.modelfile import (ModelfileError, go_template_for, modelfile_text, parse_modelfile,
                                 render_go_template, turn_format)

CHATML = ("{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
          "{%- endif %}")
LLAMA_3 = ("{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + "
           "'<|end_header_id|>\\n\\n' + (message['content'] | trim) + '<|eot_id|>' }}{%- endfor %}"
           "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}")
ZEPHYR = ("{%- for message in messages %}{{- '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + "
          "'\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|assistant|>\\n' }}{%- endif %}")
ALPACA = ("{%- for message in messages %}{%- if message['role'] == 'system' %}{{- message['content'] + '\\n\\n' }}"
          "{%- elif message['role'] == 'user' %}{{- '### Instruction:\\n' + message['content'] + '\\n\\n' }}"
          "{%- elif message['role'] == 'assistant' %}{{- '### Response:\\n' + message['content'] + eos_token + "
          "'\\n\\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '### Response:\\n' }}{%- endif %}")
# Like Qwen 2.5: a default system message when the conversation has none.
DEFAULT_SYSTEM = ("{%- if messages[0]['role'] != 'system' %}{{- '<|im_start|>system\\nYou are Qwen.<|im_end|>\\n' }}"
                  "{%- endif %}" + CHATML)
# Refuses system messages, like Gemma's.
NO_SYSTEM = ("{{ bos_token }}{%- for message in messages %}{%- if message['role'] == 'system' %}"
             "{{ raise_exception('System role not supported') }}{%- endif %}"
             "{{- '<start_of_turn>' + ('model' if message['role'] == 'assistant' else 'user') + '\\n' + "
             "message['content'] + '<end_of_turn>\\n' }}{%- endfor %}"
             "{%- if add_generation_prompt %}{{- '<start_of_turn>model\\n' }}{%- endif %}")
# Shows only the last user message: not expressible per message.
LAST_ONLY = ("{%- for message in messages %}{%- if loop.last %}{{ 'Q: ' + message['content'] + '\\n' }}{%- endif %}"
             "{%- endfor %}{%- if add_generation_prompt %}A: {% endif %}")


def _raise(msg):
    raise ValueError(msg)


def jinja_render(source, bos="<s>", eos="</s>"):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    tmpl = env.from_string(source)
    return lambda messages, gen: tmpl.render(messages=messages, add_generation_prompt=gen, bos_token=bos,
                                             eos_token=eos)


CONVERSATION = [
    {"role": "system", "content": "You answer in one line."},
    {"role": "user", "content": "Who built Bramble?"},
    {"role": "assistant", "content": "The garden guild."},
    {"role": "user", "content": "When?\nIn which year?"},
]


@pytest.mark.parametrize("name, source", [("chatml", CHATML), ("llama-3", LLAMA_3), ("zephyr", ZEPHYR),
                                          ("alpaca", ALPACA), ("default-system", DEFAULT_SYSTEM)])
def test_go_template_renders_like_jinja(name, source):
    render = jinja_render(source)
    fmt = turn_format(render, bos_token="<s>")
    go = go_template_for(fmt)
    assert fmt.head + render_go_template(go, CONVERSATION, system=fmt.default_system) == render(CONVERSATION, True)
    without_system = CONVERSATION[1:]
    assert fmt.head + render_go_template(go, without_system, system=fmt.default_system) == render(without_system, True)


def test_llama3_bos_is_left_to_llama_cpp():
    fmt = turn_format(jinja_render(LLAMA_3, bos="<|begin_of_text|>"), bos_token="<|begin_of_text|>")
    assert fmt.head == "<|begin_of_text|>"
    assert "begin_of_text" not in go_template_for(fmt)
    assert fmt.stop_sequences("<|end_of_text|>")[0] == "<|eot_id|>"


def test_default_system_becomes_modelfile_system():
    fmt = turn_format(jinja_render(DEFAULT_SYSTEM))
    assert fmt.default_system == "You are Qwen."
    parsed = parse_modelfile(modelfile_text("m.gguf", fmt, eos_token="</s>"))
    assert parsed["system"] == "You are Qwen."


def test_template_without_system_role():
    render = jinja_render(NO_SYSTEM)
    fmt = turn_format(render, bos_token="<s>")
    assert fmt.system is None
    conv = CONVERSATION[1:]
    assert fmt.head + render_go_template(go_template_for(fmt), conv) == render(conv, True)


def test_inexpressible_template_is_refused():
    with pytest.raises(ModelfileError):
        turn_format(jinja_render(LAST_ONLY))


def test_modelfile_reads_back():
    fmt = turn_format(jinja_render(CHATML))
    text = modelfile_text("model-q8_0.gguf", fmt, eos_token="</s>", note="made by a test")
    parsed = parse_modelfile(text)
    assert parsed["from"] == "./model-q8_0.gguf"
    assert parsed["template"] == go_template_for(fmt)
    stops = [v for k, v in parsed["parameters"] if k == "stop"]
    assert stops == ["<|im_end|>", "</s>", "<|im_start|>user"]


def test_interpreter_handles_ollama_style_trim_markers():
    # Ollama's own chatml template, written with trim markers.
    template = ('{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}'
                '<|im_start|>assistant\n')
    out = render_go_template(template, [{"role": "user", "content": "hi"}])
    assert out == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert render_go_template('{{ "{{" }} {{- " x " -}} y', []) == "{{ x y"
    with pytest.raises(ModelfileError):
        render_go_template("{{ template \"x\" }}", [])


# microsoft/Phi-3.5-mini-instruct's template (as vendored by llama.cpp): an unanswered conversation ends in EOS.
PHI_3_5 = ("{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}"
           "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}"
           "{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
           "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
           "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}")


def test_phi_3_5_template_gets_a_modelfile():
    render = jinja_render(PHI_3_5, eos="<|endoftext|>")
    fmt = turn_format(render, bos_token="<s>", eos_token="<|endoftext|>")
    assert fmt.user == ("<|user|>\n", "<|end|>\n")
    assert fmt.assistant == ("<|assistant|>\n", "<|end|>\n")
    assert fmt.generation_prompt == "<|assistant|>\n" and fmt.ending == "<|endoftext|>"
    parsed = parse_modelfile(modelfile_text("phi-q4_k_m.gguf", fmt, eos_token="<|endoftext|>"))
    assert render_go_template(parsed["template"], CONVERSATION) == render(CONVERSATION, True)
    assert [v for k, v in parsed["parameters"] if k == "stop"] == ["<|end|>", "<|endoftext|>", "<|user|>"]


@pytest.mark.parametrize("stop", ["<|im_end|>", "\n\nUser:", 'say "stop"', "<｜end▁of▁sentence｜>", " lead", "tab\there"])
def test_stop_strings_read_back_exactly_as_ollama_parses_them(stop):
    fmt = turn_format(jinja_render(CHATML))
    fmt.assistant = (fmt.assistant[0], stop)
    text = modelfile_text("m.gguf", fmt, eos_token="</s>")
    assert "\\n" not in text and "\\u" not in text  # no JSON escapes: Ollama would keep them literally
    stops = [v for k, v in parse_modelfile(text)["parameters"] if k == "stop"]
    assert stops[0] == stop.strip()


def test_ollama_parser_keeps_backslashes_and_refuses_unknown_commands():
    parsed = parse_modelfile('FROM ./m.gguf\nPARAMETER stop "a\\nb"\n# comment\nPARAMETER temperature 0.5\n')
    assert parsed["parameters"] == [("stop", "a\\nb"), ("temperature", "0.5")]
    with pytest.raises(ModelfileError, match="line 2"):
        parse_modelfile("FROM ./m.gguf\nBOGUS x\n")
    with pytest.raises(ModelfileError):
        modelfile_text("m.gguf", turn_format(jinja_render(CHATML)), eos_token='"""')


# Like Llama 3.1: a system block (with a fixed header) is always written, empty when there is no system message.
LLAMA_3_1 = ("{{- bos_token }}{{- '<|start_header_id|>system<|end_header_id|>\\n\\nCutting Knowledge Date: "
             "December 2023\\n\\n' }}{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}"
             "{%- set messages = messages[1:] %}{%- endif %}{{- '<|eot_id|>' }}{%- for message in messages %}"
             "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + "
             "'<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}"
             "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}")


@pytest.mark.parametrize("source, end_of_turn", [(LLAMA_3_1, "<|eot_id|>"), (DEFAULT_SYSTEM, "<|im_end|>\n")])
def test_default_system_templates_keep_the_end_of_turn_as_the_assistants_suffix(source, end_of_turn):
    render = jinja_render(source, bos="<|begin_of_text|>")
    fmt = turn_format(render, bos_token="<|begin_of_text|>")
    assert fmt.assistant[1] == end_of_turn and fmt.user[1] == end_of_turn
    parsed = parse_modelfile(modelfile_text("m.gguf", fmt, eos_token="</s>"))
    for conv in (CONVERSATION, CONVERSATION[1:]):
        assert fmt.head + render_go_template(parsed["template"], conv, system=parsed.get("system")) == render(conv, True)
    assert [v for k, v in parsed["parameters"] if k == "stop"][0] == end_of_turn.strip()
