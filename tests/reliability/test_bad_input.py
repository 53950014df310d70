"""Bad input, table-driven: every malformed config and dataset gets a clear error, never a traceback.

Each case writes a project into a temporary folder, runs the real CLI and checks the promise
made to users. `config check` and `data check` run as subprocesses (`sys.executable -m
tui_tuner ...`); `train` loads the model's tokenizer (transformers, ~6 s a process) before it
refuses, so most `train` cases call the same `main(argv)` in this process and a sample of
them (`SUBPROCESS_TRAIN_CASES`) still goes through a real subprocess:

- exit status 2;
- a short error that names the file, the line (where the problem has one) and what to do;
- no Python traceback on stdout or stderr;
- `train` leaves no run directory behind.

    PYTHONPATH=$PWD python -m pytest -q tests/reliability/test_bad_input.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[2]

GOOD_ROWS = [
    {"instruction": "What is Bramble?", "output": "A garden robot."},
    {"instruction": "How heavy is Bramble?", "output": "4 kilograms."},
    {"instruction": "What colour is Bramble?", "output": "Moss green."},
    {"instruction": "Where does Bramble sleep?", "output": "In the shed."},
]


def good_jsonl(rows=GOOD_ROWS) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def config_text(*, train: str = "data/train.jsonl", extra: str = "") -> str:
    """A valid config for the demo model; `extra` is appended verbatim (later keys win in YAML)."""
    return (
        "model:\n"
        "  name_or_path: tui-tuner/demo-tiny-llama\n"
        "  max_seq_length: 128\n"
        "method: lora\n"
        "lora:\n"
        "  r: 4\n"
        "  alpha: 8\n"
        "data:\n"
        f"  train: {train}\n"
        "training:\n"
        "  max_steps: 1\n"
        "  batch_size: 1\n"
        "  grad_accumulation: 1\n"
        "output:\n"
        "  runs_dir: runs\n"
        + extra
    )


def with_section_value(section: str, key: str, value: str) -> str:
    """The valid config with `section.key` set to the raw YAML `value` (on its own line)."""
    text = config_text()
    marker = f"{section}:\n"
    existing = re.search(rf"^{re.escape(marker)}(?:  .*\n)*?(  {re.escape(key)}: .*)$", text, re.M)
    if existing:
        return text[:existing.start(1)] + f"  {key}: {value}" + text[existing.end(1):]
    if marker in text:
        return text.replace(marker, f"{marker}  {key}: {value}\n", 1)
    return text + f"{section}:\n  {key}: {value}\n"


@dataclass
class Case:
    id: str
    files: dict[str, str | bytes | Callable[[Path], None]]
    """Files of the project: relative path -> text, bytes, or a writer called with the path."""
    expect: list[str]
    """Substrings (case-insensitive) the error must contain: the key or problem and the fix."""
    line: int | None = None
    """The line the error must name (`file:LINE`), when the problem has one."""
    target: str = "configs/run.yaml"
    """File named on the command line (config for config cases, dataset for data cases)."""
    commands: tuple[str, ...] = ("config check", "train")
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    named_file: str | None = None
    """The file the error must name; defaults to `target`."""


def cfg_case(id: str, text: str | bytes, expect: list[str], line: int | None = None, **kw) -> Case:
    files = {"configs/run.yaml": text, "data/train.jsonl": good_jsonl()}
    files.update(kw.pop("extra_files", {}))
    return Case(id, files, expect, line, **kw)


def data_case(id: str, content, expect: list[str], line: int | None = None, name: str = "data/train.jsonl",
              commands=("data check", "train"), **kw) -> Case:
    files = {"configs/run.yaml": config_text(train=name), name: content}
    target = name if commands[0] == "data check" else "configs/run.yaml"
    return Case(id, files, expect, line, target=target, commands=commands, named_file=name, **kw)


def _huge_line(path: Path) -> None:
    """A 200 MB JSON line (one string field), written in chunks so the test stays light."""
    chunk = "x" * (1 << 20)
    with path.open("w", encoding="utf-8") as f:
        f.write(json.dumps(GOOD_ROWS[0]) + "\n")
        f.write('{"instruction": "Summarise this.", "output": "')
        for _ in range(200):
            f.write(chunk)
        f.write('"}\n')
        f.write(json.dumps(GOOD_ROWS[1]) + "\n")


def _long_rows(n: int = 6) -> str:
    long = " ".join(f"word{i}" for i in range(400))
    return good_jsonl([{"instruction": f"Repeat: {long}", "output": long} for _ in range(n)])


PAIR_ROWS = [
    {"prompt": "What is Bramble?", "chosen": "A garden robot.", "rejected": "A satellite."},
    {"prompt": "How heavy is Bramble?", "chosen": "4 kilograms.", "rejected": "Nobody knows."},
]
KTO_ROWS = [
    {"prompt": "What is Bramble?", "completion": "A garden robot.", "label": True},
    {"prompt": "How heavy is Bramble?", "completion": "Nobody knows.", "label": False},
]
PROMPT_ROWS = [{"prompt": "What is 2 plus 3?", "answer": "5"}, {"prompt": "What is 4 minus 1?", "answer": "3"}]


def objective_config(objective: str, section: str = "", train: str = "data/train.jsonl") -> str:
    """The valid config with `objective` set (and an objective section, YAML text, appended)."""
    text = config_text(train=train, extra=f"objective: {objective}\n" + section)
    if objective == "grpo":  # GRPO compares completions of one prompt inside a batch: two at least
        text = text.replace("  batch_size: 1\n", "  batch_size: 2\n")
    return text


def objective_data_case(id: str, objective: str, content, expect: list[str], line: int | None = None,
                        section: str = "", **kw) -> Case:
    """Bad data for `objective`: `data check FILE --config` and `train` both refuse it by line."""
    files = {"configs/run.yaml": objective_config(objective, section), "data/train.jsonl": content}
    return Case(id, files, expect, line, target="data/train.jsonl", commands=("data check", "train"),
                args=["--config", "configs/run.yaml"], named_file="data/train.jsonl", **kw)


def objective_cfg_case(id: str, objective: str, section: str, expect: list[str], line: int | None = None,
                       rows=PROMPT_ROWS, extra_files: dict | None = None, training: str = "") -> Case:
    text = objective_config(objective, section).replace("  grad_accumulation: 1\n", "  grad_accumulation: 1\n" + training)
    files = {"configs/run.yaml": text, "data/train.jsonl": good_jsonl(rows),
             **(extra_files or {})}
    return Case(id, files, expect, line)


_SHARED = " ".join(f"word{i}" for i in range(300))
GRPO_OK = "grpo:\n  num_generations: 2\n  max_completion_length: 8\n"

def _alias_bomb(indent: str = "") -> str:
    """Nine levels of `&x [*w, *w, ...]`: under 1 KB of YAML that expands to 9**9 values."""
    text = indent + 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    previous = "a"
    for name in "bcdefghi":
        text += indent + f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]\n"
        previous = name
    return text


def _unsloth_unusable_here() -> bool:
    """`backend: unsloth` cannot run on this machine (not installed, or no NVIDIA GPU): config check must say so."""
    if importlib.util.find_spec("unsloth") is None:
        return True
    from tui_tuner.fit.hardware import list_gpus

    return not list_gpus()


def _nested_jsonl(path: Path) -> None:
    path.write_text(good_jsonl() + "[" * 100_000 + "]" * 100_000 + "\n" + good_jsonl(), encoding="utf-8")


def _nested_json_array(path: Path) -> None:
    path.write_text("[" + json.dumps(GOOD_ROWS[0]) + ",\n" + "[" * 100_000 + "]" * 100_000 + "\n]\n", encoding="utf-8")


TEMPLATE_RANGE_OVERFLOW = "\"{% for i in range(100000000) %}x{% endfor %}{% for m in messages %}{{ m['content'] }}{% endfor %}\""
TEMPLATE_BROKEN_SYNTAX = "\"{% for m in messages %}{{ m['content'] }\""
TEMPLATE_UNKNOWN_FILTER = "\"{% for m in messages %}{{ m['content'] | shout }}{% endfor %}\""
TEMPLATE_DROPS_MESSAGES = "\"{% for m in messages %}{{ m['role'] }}: {% endfor %}\""
TEMPLATE_RAISES = "\"{{ raise_exception('this template takes no conversations') }}\""
TEMPLATE_ESCAPES_SANDBOX = "\"{{ messages.__class__.__mro__[1].__subclasses__() }}{% for m in messages %}{{ m['content'] }}{% endfor %}\""

CASES: list[Case] = [
    # --- wrong types
    cfg_case("type-lora-r-string", with_section_value("lora", "r", "sixteen"), ["lora.r", "sixteen"], line=6),
    cfg_case("type-batch-list", with_section_value("training", "batch_size", "[1, 2]"), ["training.batch_size"], line=12),
    cfg_case("type-lr-word", with_section_value("training", "learning_rate", "fast"), ["training.learning_rate", "fast"], line=11),
    cfg_case("type-trust-remote-code", with_section_value("model", "trust_remote_code", "maybe"), ["model.trust_remote_code"], line=2),
    cfg_case("type-section-scalar", config_text().replace("lora:\n  r: 4\n  alpha: 8\n", "lora: 16\n"), ["lora"], line=5),
    cfg_case("choice-method", config_text().replace("method: lora", "method: lorra"), ["method", "lorra", "qlora"], line=4),
    cfg_case("choice-optimizer", with_section_value("training", "optimizer", "adam"), ["training.optimizer", "adamw_torch"], line=11),
    cfg_case("choice-dtype", with_section_value("model", "dtype", "fp16"), ["model.dtype", "float16"], line=2),
    cfg_case("choice-chat-template-typo", with_section_value("model", "chat_template", "chatm"), ["model.chat_template", "chatml"], line=2),
    # --- out of range
    cfg_case("range-lora-r-zero", with_section_value("lora", "r", "0"), ["lora.r", "greater than"], line=6),
    cfg_case("range-dropout", with_section_value("lora", "dropout", "1.5"), ["lora.dropout", "less than"], line=6),
    cfg_case("range-warmup-negative", with_section_value("training", "warmup_ratio", "-0.1"), ["training.warmup_ratio"], line=11),
    cfg_case("range-gpus-zero", with_section_value("distributed", "gpus", "0"), ["distributed.gpus"], line=17),
    cfg_case("range-seq-len", config_text().replace("max_seq_length: 128", "max_seq_length: 8"), ["model.max_seq_length"], line=3),
    cfg_case("range-lr-huge", with_section_value("training", "learning_rate", "5"), ["training.learning_rate"], line=11),
    cfg_case("range-epochs-zero", with_section_value("training", "epochs", "0"), ["training.epochs"], line=11),
    cfg_case("range-max-samples-zero", with_section_value("data", "max_samples", "0"), ["data.max_samples"], line=9),
    # --- unknown keys
    cfg_case("unknown-key-misplaced", config_text() + "learning_rate: 1e-4\n", ["learning_rate", "training.learning_rate"], line=16),
    cfg_case("unknown-key-typo", with_section_value("lora", "alhpa", "8"), ["lora.alhpa", "did you mean `lora.alpha`"], line=6),
    cfg_case("unknown-section", config_text() + "optimiser:\n  name: adamw\n", ["optimiser"], line=16),
    # --- empty and unparsable files
    cfg_case("empty-file", "", ["empty", "quickstart"], line=1),
    cfg_case("whitespace-only", "   \n\n  \n", ["empty"], line=1),
    cfg_case("yaml-unclosed-list", with_section_value("lora", "target_modules", "[q_proj, v_proj"), ["yaml syntax"]),
    cfg_case("yaml-missing-colon", config_text().replace("  r: 4\n", "  r 4\n"), ["yaml syntax", "space after the colon"], line=7),
    cfg_case("yaml-tabs", config_text().replace("  r: 4\n", "\tr: 4\n"), ["tabs", "spaces"], line=6),
    cfg_case("yaml-top-level-list", "- model\n- lora\n", ["mapping"], line=1),
    cfg_case("yaml-top-level-scalar", "just some words\n", ["mapping"], line=1),
    cfg_case("config-not-utf8", config_text().encode() + b"# caf\xe9\n", ["utf-8"], line=16),
    cfg_case("config-missing", config_text(), ["not found", "config reference"], target="configs/nope.yaml"),
    # the README's `tui-tuner train configs/quickstart.yaml` typed outside the clone: point at the clone
    cfg_case("config-shipped-outside-clone", config_text(), ["not found", "config quickstart", f"cd {REPO}"],
             target="configs/quickstart.yaml"),
    cfg_case("config-preset-outside-clone", config_text(), ["not found", f"cd {REPO}"],
             target="configs/zephyr-7b-beta-qlora.yaml"),
    cfg_case("config-is-folder", config_text(), ["cannot read"], target="configs"),
    # --- YAML tags are data, never code
    cfg_case("yaml-python-object-tag",
             config_text().replace("method: lora", "method: !!python/object/apply:os.system ['touch PWNED']"),
             ["yaml syntax"], line=4),
    # --- combinations that cannot run
    cfg_case("cross-eval-steps-without-eval", with_section_value("training", "eval_steps", "5"), ["eval"], line=11),
    cfg_case("cross-fsdp-qlora", config_text().replace("method: lora", "method: qlora")
             + "distributed:\n  strategy: fsdp\n", ["fsdp", "ddp"], line=17),
    cfg_case("cross-target-modules-string", with_section_value("lora", "target_modules", "q_proj"), ["lora.target_modules", "list"], line=6),
    cfg_case("cross-target-modules-empty", with_section_value("lora", "target_modules", "[]"), ["lora.target_modules", "empty"], line=6),
    # --- run names that would escape the runs directory
    cfg_case("run-name-dotdot", with_section_value("output", "run_name", "../../etc"), ["output.run_name", "inside the runs directory"], line=15),
    cfg_case("run-name-absolute", with_section_value("output", "run_name", "/tmp/evil"), ["output.run_name", "inside the runs directory"], line=15),
    cfg_case("run-name-nul", with_section_value("output", "run_name", '"a\\0b"'), ["output.run_name", "nul"], line=15),
    # --- --set overrides
    cfg_case("set-wrong-type", config_text(), ["lora.r"], args=["--set", "lora.r=abc"]),
    cfg_case("set-not-key-value", config_text(), ["key=value"], args=["--set", "lora.r"], named_file="--set"),
    # --- the world the config points at (preflight)
    cfg_case("model-path-missing", with_section_value("model", "name_or_path", "./models/my-llama"),
             ["model.name_or_path", "does not exist"], line=2),
    cfg_case("model-path-is-file", with_section_value("model", "name_or_path", "data/train.jsonl"),
             ["model.name_or_path", "folder"], line=2),
    cfg_case("model-folder-without-config", with_section_value("model", "name_or_path", "models/empty"),
             ["config.json"], line=2, extra_files={"models/empty/README.md": "weights go here\n"}),
    cfg_case("hub-id-unknown-offline", with_section_value("model", "name_or_path", "nobody-at-all/no-such-model-7b"),
             ["nobody-at-all/no-such-model-7b", "hf_hub_offline"], line=2, env={"HF_HUB_OFFLINE": "1"}),
    cfg_case("dataset-missing", config_text(train="data/typo.jsonl"), ["data.train", "does not exist"], line=9),
    cfg_case("dataset-is-folder", config_text(train="data"), ["data.train", "folder"], line=9),
    cfg_case("eval-dataset-missing", with_section_value("data", "eval", "data/heldout.jsonl"), ["data.eval", "does not exist"], line=9),
    # hub datasets: a missing id offline names the id, the cache and `data pull`; malformed settings name the key
    cfg_case("hub-dataset-unknown-offline", config_text(train="nobody-at-all/no-such-dataset"),
             ["data.train", "nobody-at-all/no-such-dataset", "not on this machine", "hub cache",
              "tui-tuner data pull nobody-at-all/no-such-dataset"], line=9, env={"HF_HUB_OFFLINE": "1"}),
    Case("hub-dataset-unknown-offline-data-check", {"configs/run.yaml": config_text()},
         ["nobody-at-all/no-such-dataset", "not on this machine", "tui-tuner data pull nobody-at-all/no-such-dataset"],
         target="nobody-at-all/no-such-dataset", commands=("data check",), env={"HF_HUB_OFFLINE": "1"}),
    cfg_case("hub-url-not-a-dataset", config_text(train="hf://nobody-at-all/some-model"),
             ["data.train", "hf://datasets/"], line=9),
    cfg_case("hub-url-not-a-data-file", config_text(train="hf://datasets/acme/qa/notes.txt"),
             ["data.train", ".jsonl"], line=9),
    cfg_case("hub-split-unclosed-slice", with_section_value("data", "split", '"train[:20"'),
             ["data.split", "train[:2000]"], line=9),
    cfg_case("hub-subset-empty", with_section_value("data", "subset", '""'), ["data.subset", "empty"], line=9),
    cfg_case("template-syntax-error", with_section_value("model", "chat_template", TEMPLATE_BROKEN_SYNTAX), ["model.chat_template", "jinja"], line=2),
    cfg_case("template-unknown-filter", with_section_value("model", "chat_template", TEMPLATE_UNKNOWN_FILTER), ["model.chat_template", "shout"], line=2),
    cfg_case("template-drops-messages", with_section_value("model", "chat_template", TEMPLATE_DROPS_MESSAGES), ["model.chat_template", "every message"], line=2),
    cfg_case("template-raises", with_section_value("model", "chat_template", TEMPLATE_RAISES), ["model.chat_template", "takes no conversations"], line=2),
    cfg_case("template-sandbox-escape", with_section_value("model", "chat_template", TEMPLATE_ESCAPES_SANDBOX), ["model.chat_template", "unsafe"], line=2),
    # --- hostile YAML: alias bombs, deep nesting, duplicate keys, values YAML coerces
    cfg_case("yaml-alias-bomb", config_text() + _alias_bomb(), ["aliases", "expand"], line=20),
    cfg_case("yaml-alias-bomb-under-lora", config_text().replace("lora:\n", "lora:\n" + _alias_bomb("  ")),
             ["aliases", "expand"], line=10),
    cfg_case("yaml-nested-5000", config_text() + "deep: " + "[" * 5000 + "]" * 5000 + "\n", ["nested", "levels"], line=16),
    cfg_case("yaml-nested-mappings", config_text() + "".join("  " * i + f"k{i}:\n" for i in range(60)) + "  " * 60 + "v: 1\n",
             ["nested", "levels"]),
    cfg_case("yaml-duplicate-key", config_text().replace("  alpha: 8\n", "  alpha: 8\n  r: 64\n"),
             ["duplicate key `r`", "line 6", "line 8"], line=8),
    cfg_case("yaml-duplicate-section", config_text() + "lora:\n  r: 8\n", ["duplicate key `lora`", "line 5"], line=16),
    cfg_case("comment-only", "# a config with every line commented out\n# model:\n#   name_or_path: x\n",
             ["no settings", "quickstart"], line=1),
    cfg_case("max-steps-true", with_section_value("training", "max_steps", "true"), ["training.max_steps", "number"], line=11),
    cfg_case("max-steps-yes", with_section_value("training", "max_steps", "yes"), ["training.max_steps", "number"], line=11),
    cfg_case("lora-r-true", with_section_value("lora", "r", "true"), ["lora.r", "number"], line=6),
    cfg_case("max-steps-absurd", with_section_value("training", "max_steps", "100000000000"),
             ["training.max_steps", "less than"], line=11),
    cfg_case("epochs-absurd", with_section_value("training", "epochs", "1e9"), ["training.epochs", "less than"], line=11),
    # --- checkable before a run exists: the model's layers, the backend, the runs folder
    cfg_case("target-modules-unknown", with_section_value("lora", "target_modules", "[q_proj, v_prj]"),
             ["lora.target_modules", "v_prj", "did you mean v_proj"], line=6),
    cfg_case("target-modules-other-model", with_section_value("lora", "target_modules", "[c_attn]"),
             ["lora.target_modules", "c_attn", "all-linear"], line=6),
    *([cfg_case("backend-unsloth-unusable", config_text() + "backend: unsloth\n", ["backend", "unsloth", "backend: auto"],
                line=16)] if _unsloth_unusable_here() else []),
    cfg_case("runs-dir-in-proc", with_section_value("output", "runs_dir", "/proc/x/runs"), ["output.runs_dir", "/proc"],
             line=15),
    cfg_case("runs-dir-is-a-file", with_section_value("output", "runs_dir", "data/train.jsonl/runs"),
             ["output.runs_dir", "is a file"], line=15),
    cfg_case("template-range-overflow", with_section_value("model", "chat_template", TEMPLATE_RANGE_OVERFLOW),
             ["model.chat_template", "range"], line=2),
    # --- datasets
    data_case("data-nested-100k-deep", _nested_jsonl, ["nested too deeply"], line=5),
    data_case("data-json-array-nested-100k-deep", _nested_json_array, ["nested too deeply"], line=2,
              name="data/train.json"),
    data_case("data-lone-surrogate", good_jsonl() + '{"instruction": "Say \\ud800 please", "output": "ok"}\n',
              ["surrogate", "\\ud800"], line=5),
    data_case("data-lone-surrogate-in-chat",
              json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]})
              + "\n" + '{"messages": [{"role": "user", "content": "x\\udfff"}, {"role": "assistant", "content": "y"}]}\n',
              ["surrogate"], line=2),
    data_case("data-broken-json-mid-file", good_jsonl() + '{"instruction": "Half a line", "output": \n' + good_jsonl(),
              ["json"], line=5),
    data_case("data-bom-mid-file", good_jsonl().encode() + b"\xef\xbb\xbf" + good_jsonl().encode(),
              ["byte-order mark", "without bom"], line=5),
    data_case("data-non-utf8", good_jsonl().encode() + b'{"instruction": "caf\xe9", "output": "ok"}\n', ["utf-8"], line=5),
    data_case("data-zero-bytes", b"", ["empty"]),
    data_case("data-blank-lines-only", "\n\n   \n", ["no records", "blank"]),
    data_case("data-200mb-line", _huge_line, ["line"], line=2),
    data_case("data-wrong-field-types", good_jsonl() + json.dumps({"instruction": 5, "output": ["a", "b"]}) + "\n",
              ["instruction"], line=5),
    data_case("data-line-not-object", good_jsonl() + "[1, 2, 3]\n", ["object"], line=5),
    data_case("data-messages-not-list", json.dumps({"messages": "hello"}) + "\n", ["messages"], line=1),
    data_case("data-empty-assistant-turn",
              json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}) + "\n"
              + json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}) + "\n",
              ["assistant", "empty"], line=2),
    data_case("data-roles-out-of-order",
              json.dumps({"messages": [{"role": "assistant", "content": "hello"}, {"role": "user", "content": "hi"},
                                       {"role": "user", "content": "again"}]}) + "\n",
              ["starts with the assistant", "alternate"], line=1),
    data_case("data-unknown-role",
              json.dumps({"messages": [{"role": "human", "content": "hi"}, {"role": "bot", "content": "yo"}]}) + "\n",
              ["role"], line=1),
    data_case("data-unknown-format", good_jsonl([{"question": "q", "answer": "a"}] * 3), ["format", "fields"]),
    data_case("data-json-array-broken", '[{"instruction": "a", "output": "b"},\n {"instruction": "c", "output": }\n]\n',
              ["json"], line=2, name="data/train.json"),
    data_case("data-python-tag", "!!python/object/apply:os.system ['touch PWNED']\n", ["json"], line=1),
    # --- preference, KTO and prompt-only data; GRPO reward functions (objectives beyond SFT)
    objective_data_case("pref-missing-rejected", "dpo",
                        good_jsonl(PAIR_ROWS[:1] + [{"prompt": "Hi", "chosen": "Hello."}]), ["rejected", "prompt"], line=2),
    objective_data_case("pref-empty-chosen", "dpo",
                        good_jsonl(PAIR_ROWS + [{"prompt": "Hi", "chosen": "", "rejected": "Go."}]), ["chosen", "empty"],
                        line=3),
    objective_data_case("pref-side-is-a-number", "orpo",
                        good_jsonl(PAIR_ROWS + [{"prompt": "Hi", "chosen": 5, "rejected": "Go."}]),
                        ["chosen", "list of messages"], line=3),
    objective_data_case("pref-conversations-share-no-prompt", "dpo", good_jsonl([
        {"chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
         "rejected": [{"role": "user", "content": "Yo"}, {"role": "assistant", "content": "Go."}]}]),
        ["share no prompt", "add a `prompt`"], line=1),
    objective_data_case("pref-difference-cut-by-truncation", "dpo", good_jsonl([
        {"prompt": "Say it.", "chosen": _SHARED + " yes", "rejected": _SHARED + " no"}] * 2),
        ["max_seq_length", "cuts the difference off"], line=1),
    objective_data_case("kto-label-not-bool", "kto",
                        good_jsonl(KTO_ROWS + [{"prompt": "Hi", "completion": "Hello.", "label": "maybe"}]),
                        ["label", "true"], line=3),
    objective_data_case("kto-only-desirable", "kto", good_jsonl([KTO_ROWS[0]] * 3), ["desirable", "both"]),
    objective_data_case("grpo-no-prompt-field", "grpo", good_jsonl([{"text": "What is 2 plus 3?"}]),
                        ["no prompt", "question"], line=1, section=GRPO_OK),
    objective_data_case("grpo-prompt-ends-with-assistant", "grpo", good_jsonl([{"messages": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}]), ["user turn"], line=1,
        section=GRPO_OK),
    objective_cfg_case("grpo-unknown-reward", "grpo", GRPO_OK + "  rewards: [formt]\n",
                       ["grpo.rewards.0", "did you mean `format`"], line=20),
    objective_cfg_case("grpo-reward-file-missing", "grpo", GRPO_OK + "  rewards: [nope.py:score]\n",
                       ["grpo.rewards.0", "reward file not found"], line=20),
    objective_cfg_case("grpo-reward-file-lacks-function", "grpo", GRPO_OK + "  rewards: [rw.py:score]\n",
                       ["rw.py defines no function `score`", "scores"],
                       extra_files={"rw.py": "def scores(prompts, completions, **kw):\n    return [0.0] * len(completions)\n"}),
    objective_cfg_case("grpo-reward-file-syntax-error", "grpo", GRPO_OK + "  rewards: [rw.py:score]\n",
                       ["syntax error"], extra_files={"rw.py": "def score(prompts, completions, **kw)\n    return 1\n"}),
    objective_cfg_case("grpo-reward-wrong-signature", "grpo", GRPO_OK + "  rewards: [rw.py:score]\n",
                       ["must accept `completions`"], extra_files={"rw.py": "def score(text):\n    return 1.0\n"}),
    objective_cfg_case("grpo-reward-column-missing", "grpo", GRPO_OK + "  rewards: [answer_match]\n",
                       ["answer_match", "column `answer`"], rows=[{"prompt": "What is 2 plus 3?"}] * 2),
    objective_cfg_case("grpo-generations-do-not-divide-batch", "grpo", "grpo:\n  num_generations: 4\n",
                       ["grpo.num_generations", "multiple"], line=18),
    objective_cfg_case("objective-with-packing", "dpo", "", ["packing", "packing: false"], rows=PAIR_ROWS,
                       training="  packing: true\n"),
    objective_cfg_case("init-adapter-not-an-adapter", "dpo", "init_adapter: data\n", ["init_adapter", "no adapter"],
                       rows=PAIR_ROWS),
    data_case("data-all-too-long", _long_rows(), ["max_seq_length", "nothing to train"], line=1,
              commands=("data check", "train"), args=["--config", "configs/run.yaml"]),
]


def _write(root: Path, files: dict) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def _cli_commands() -> set[str]:
    out = subprocess.run([sys.executable, "-m", "tui_tuner", "--help"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    return set(re.findall(r"^\s{4}(\w+)", out.stdout, re.M))


AVAILABLE = _cli_commands()

SUBPROCESS_TRAIN_CASES = {"yaml-tabs", "model-path-missing", "data-broken-json-mid-file"}
"""`train` cases that also run as a real subprocess, so the in-process shortcut cannot hide a
difference between `main(argv)` and the installed command."""


def _run_in_process(cli_args: list[str], cwd: Path, env: dict[str, str], monkeypatch):
    """`tui-tuner ARGS` through `tui_tuner.cli.main` in this process: (exit status, stdout, stderr).

    An exception escaping `main` fails the test, as a traceback would in the subprocess. Output
    goes to buffers that are never closed, because library loggers keep the stream they first
    saw and a later test must not find it closed.
    """
    import contextlib
    import io

    from tui_tuner.cli import main

    monkeypatch.chdir(cwd)
    for key, value in env.items():
        if os.environ.get(key) != value:
            monkeypatch.setenv(key, value)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(cli_args)
        except SystemExit as exc:  # argparse errors exit like the command would
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


PARAMS = [pytest.param(case, command, id=f"{case.id}[{command.replace(' ', '-')}]")
          for case in CASES for command in case.commands]


def test_table_is_large_enough():
    assert len(CASES) >= 40 and len(PARAMS) >= 80


@pytest.mark.parametrize("case,command", PARAMS)
def test_bad_input_gets_a_clear_error(case: Case, command: str, tmp_path: Path, monkeypatch):
    if command.split()[0] not in AVAILABLE:
        pytest.skip(f"`tui-tuner {command}` is not part of this build yet")
    if case.id.startswith("data-") and importlib.util.find_spec("tui_tuner.data") is None:
        pytest.skip("dataset validation (`tui_tuner.data`) is not part of this build yet")
    _write(tmp_path, case.files)
    target = case.target
    if command == "train" and case.target.startswith("data/"):
        target = "configs/run.yaml"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1",
           "COLUMNS": "400", **case.env}
    args = [] if command == "train" and case.target.startswith("data/") else case.args  # data check's own flags
    cli_args = [*command.split(), target, *args]
    if command == "train" and case.id not in SUBPROCESS_TRAIN_CASES:
        returncode, stdout, stderr = _run_in_process(cli_args, tmp_path, env, monkeypatch)
    else:
        proc = subprocess.run([sys.executable, "-m", "tui_tuner", *cli_args], cwd=tmp_path, capture_output=True,
                              text=True, env=env, timeout=600)
        returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    out = stdout + stderr
    assert "Traceback" not in out, out
    assert returncode == 2, f"exit {returncode}\n{out}"
    named = case.named_file or target
    assert Path(named).name in out, f"the error does not name {named}:\n{out}"
    if case.line is not None:
        assert re.search(rf"{re.escape(Path(named).name)}:{case.line}\b", out), f"no {named}:{case.line} in:\n{out}"
    lowered = out.lower()
    for word in case.expect:
        assert word.lower() in lowered, f"{word!r} missing from:\n{out}"
    assert "\n\n" not in stderr.strip(), f"the error is not one paragraph:\n{stderr}"
    assert not (tmp_path / "PWNED").exists(), "a YAML tag executed code"
    if command == "train":
        runs = tmp_path / "runs"
        leftovers = sorted(p.name for p in runs.iterdir()) if runs.exists() else []
        assert leftovers == [], f"train left run directories behind: {leftovers}"


# ---------------------------------------------------------------------------- beyond the table
# Hostile input that needs more than one command, a run folder or a bound on resources.


def _child_peak_rss(cli_args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, int]:
    """Run `tui-tuner ARGS` in a child that reports its own peak RSS (bytes) on its last stderr line."""
    # VmHWM belongs to this program's own address space; ru_maxrss would also count the pytest
    # process this child was forked from, before it exec'd.
    code = ("import re, runpy, sys\n"
            f"sys.argv = ['tui-tuner', *{cli_args!r}]\n"
            "try:\n    runpy.run_module('tui_tuner', run_name='__main__')\n"
            "finally:\n    status = open('/proc/self/status').read()\n"
            "    print('PEAK_RSS', int(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1)) * 1024, file=sys.stderr)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "300"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    peak = int(re.findall(r"PEAK_RSS (\d+)", proc.stderr)[-1])
    return proc, peak


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from /proc (Linux)")
def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path):
    """Unguarded, this 1 KB file grows `config check` past 2.3 GB; guarded it stays at an ordinary process's size."""
    _write(tmp_path, {"configs/run.yaml": config_text() + _alias_bomb(), "data/train.jsonl": good_jsonl()})
    assert (tmp_path / "configs/run.yaml").stat().st_size < 2048
    proc, peak = _child_peak_rss(["config", "check", "configs/run.yaml"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "alias bomb" in proc.stderr
    assert peak < 200 * 2**20, f"config check peaked at {peak / 2**20:.0f} MiB"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from /proc (Linux)")
def test_a_10mb_message_costs_data_check_a_budget_not_the_whole_line(tmp_path):
    """The tokenizer sees at most a budget of each message, so time and memory stay linear in the file;
    the library's "Token indices sequence length" warning stays out of the output."""
    big = "word " * (2 * 1024 * 1024)  # 10 MiB of text in one answer and in one prompt
    rows = GOOD_ROWS + [{"instruction": "Summarise.", "output": big}, {"instruction": big, "output": "short"}]
    _write(tmp_path, {"configs/run.yaml": config_text(), "data/train.jsonl": good_jsonl(rows)})
    proc, peak = _child_peak_rss(["data", "check", "data/train.jsonl", "--config", "configs/run.yaml"], tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert "train.jsonl:5: 2 example(s) hold more than" in out and "estimated" in out, out
    assert "Token indices sequence length" not in out
    assert peak < 1200 * 2**20, f"data check peaked at {peak / 2**20:.0f} MiB for a 20 MiB file"


def _fake_runs(runs_dir: Path) -> dict[str, Path]:
    """One good run and one run broken in each way a hand edit or another tool can break status.json."""
    from tui_tuner.config.schema import RunConfig
    from tui_tuner.rundir.runs import create_run
    from tui_tuner.rundir.status import RunStatus, write_status

    cfg = RunConfig()
    cfg.output.runs_dir = str(runs_dir)
    made = {}
    broken = {"good": None, "bad-created": {"created": "yesterday"}, "bad-loss": {"loss": "abc"},
              "bad-state": {"state": "[bold red]exploded[/"}, "not-json": "{\"state\": ", "bad-step": {"step": [1]},
              "list": "[1, 2]"}
    for name, damage in broken.items():
        run = create_run(cfg, runs_dir, name=name)
        write_status(run.path, RunStatus(state="finished", step=3, max_steps=3, loss=1.25, started=1.0, ended=2.0))
        if isinstance(damage, dict):
            data = json.loads((run.path / "status.json").read_text())
            (run.path / "status.json").write_text(json.dumps({**data, **damage}))
        elif isinstance(damage, str):
            (run.path / "status.json").write_text(damage)
        made[name] = run.path
    return made


def test_one_corrupt_run_never_hides_the_others(tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    made = _fake_runs(runs_dir)
    env = {"NO_COLOR": "1", "COLUMNS": "300"}
    code, out, err = _run_in_process(["runs", "ls", "--runs-dir", str(runs_dir)], tmp_path, env, monkeypatch)
    assert code == 0 and "Traceback" not in out + err, out + err
    for name in made:
        assert Path(made[name]).name in out
    assert re.search(r"good-\S+\s+finished", out)
    assert out.count("unreadable ") >= 6 and "`created` is 'yesterday', not a number" in out
    assert "`loss` is 'abc'" in out and "unknown state '[bold red]exploded[/'" in out and "not valid JSON" in out
    code, out, err = _run_in_process(["runs", "ls", "--json", "--runs-dir", str(runs_dir)], tmp_path, env, monkeypatch)
    rows = json.loads(out)
    assert code == 0 and len(rows) == len(made)
    assert sorted(r["state"] for r in rows) == ["finished"] + ["unreadable"] * 6
    for form in ([], ["--markdown"], ["--csv"], ["--json"]):
        code, out, err = _run_in_process(["runs", "table", "--runs-dir", str(runs_dir), *form], tmp_path, env,
                                         monkeypatch)
        assert code == 0 and "Traceback" not in out + err, out + err
        assert all(Path(p).name in out for p in made.values()), out
    bad = Path(made["bad-loss"]).name
    code, out, err = _run_in_process(["runs", "show", bad, "--runs-dir", str(runs_dir)], tmp_path, env, monkeypatch)
    assert code == 0 and "unreadable" in out and "`loss` is 'abc'" in out, out + err
    code, out, err = _run_in_process(["runs", "resume", bad, "--runs-dir", str(runs_dir)], tmp_path, env, monkeypatch)
    assert code == 2 and "cannot be resumed" in err and "`loss` is 'abc'" in err, out + err


def _torch_like_file(path: Path, payload: bytes = b"\x80\x02}q\x00.") -> None:
    """A zip laid out like torch.save output (stored, so its bytes can be garbled in place)."""
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", payload * 50)


def _checkpoint(run_path: Path, step: int, *, state: dict | None = None) -> Path:
    """A checkpoint folder with every file `runs resume` loads, valid unless told otherwise."""
    folder = run_path / "checkpoints" / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (folder / "adapter_model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        _torch_like_file(folder / name)
    trainer_state = {"global_step": step, "max_steps": 10, "epoch": 0.5, "log_history": [{"loss": 1.0, "step": step}],
                     "logging_steps": 1, "save_steps": 1, "train_batch_size": 1, "stateful_callbacks": {}}
    (folder / "trainer_state.json").write_text(json.dumps({**trainer_state, **(state or {})}))
    return folder


def test_resume_passes_over_checkpoints_it_could_not_load_and_says_why(tmp_path, monkeypatch):
    from tui_tuner.commands.runs_cmd import skipped_checkpoints
    from tui_tuner.rundir.runs import RunDir, checkpoint_problem

    made = _fake_runs(tmp_path / "runs")
    run = RunDir(made["good"])
    good = _checkpoint(run.path, 1)
    typed = _checkpoint(run.path, 2, state={"global_step": "2", "log_history": "none"})
    garbled = _checkpoint(run.path, 3)
    raw = bytearray((garbled / "rng_state.pth").read_bytes())
    middle = raw.index(b"\x80\x02}q") + 40
    raw[middle:middle + 8] = b"GARBLED!"
    (garbled / "rng_state.pth").write_bytes(bytes(raw))
    listed = _checkpoint(run.path, 4)
    (listed / "adapter_model.safetensors").write_bytes((9).to_bytes(8, "little") + b"[1, 2, 3]")  # a list header
    assert checkpoint_problem(good) is None
    assert "trainer_state.json: `global_step` is '2'" in checkpoint_problem(typed)
    assert "rng_state.pth is damaged" in checkpoint_problem(garbled)
    assert "adapter_model.safetensors is truncated" in checkpoint_problem(listed)
    assert run.latest_checkpoint() == good
    assert [name for name, _ in skipped_checkpoints(run, good)] == ["checkpoint-2", "checkpoint-3", "checkpoint-4"]
    code, out, err = _run_in_process(["runs", "show", run.name, "--runs-dir", str(run.path.parent)], tmp_path,
                                     {"NO_COLOR": "1", "COLUMNS": "300"}, monkeypatch)
    assert code == 0 and "Traceback" not in out + err
    assert out.count("(incomplete:") == 3, out


def test_damaged_run_files_give_one_line_errors(tmp_path, monkeypatch):
    """A bad `resume` event, an adapter with a list header or cut short: `runs show` and `chat` say what is wrong."""
    from tui_tuner.rundir.events import load_history
    from tui_tuner.rundir.runs import RunDir

    made = _fake_runs(tmp_path / "runs")
    run = RunDir(made["good"])
    with run.events_path.open("a") as fh:
        fh.write(json.dumps({"kind": "log", "step": 1, "loss": 2.0}) + "\n")
        fh.write(json.dumps({"kind": "resume", "from_step": "abc"}) + "\n")
        fh.write(json.dumps({"kind": "log", "step": "two", "loss": "x"}) + "\n")
        fh.write(json.dumps({"kind": "log", "step": 2, "loss": 1.5}) + "\n")
    history = load_history(run.events_path)
    assert history.losses == [(1, 2.0), (2, 1.5)] and history.malformed == 2
    env = {"NO_COLOR": "1", "COLUMNS": "300"}
    code, out, err = _run_in_process(["runs", "show", run.name, "--runs-dir", str(run.path.parent)], tmp_path, env,
                                     monkeypatch)
    assert code == 0 and "Traceback" not in out + err, out + err
    adapter = run.path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "tui-tuner/demo-tiny-llama"}))
    for damage, words in ((b"\x09\0\0\0\0\0\0\0[1, 2, 3]", "not a table of tensors"),
                          (b"\x40\0\0\0\0\0\0\0{\"w\": {\"dtype\"", "truncated")):
        (adapter / "adapter_model.safetensors").write_bytes(damage)
        code, out, err = _run_in_process(["chat", run.name, "--runs-dir", str(run.path.parent), "--prompt", "hi"],
                                         tmp_path, env, monkeypatch)
        assert code == 2 and "Traceback" not in out + err, out + err
        assert "adapter_model.safetensors" in err and words in err and "--checkpoint" in err, err


def test_resume_checks_the_runs_config_before_anything_changes(tmp_path, monkeypatch):
    from tui_tuner.rundir.runs import RunDir
    from tui_tuner.rundir.status import RunStatus, write_status

    made = _fake_runs(tmp_path / "runs")
    run = RunDir(made["good"])
    write_status(run.path, RunStatus(state="stopped", step=3, max_steps=10))
    run.config_path.write_text(run.config_path.read_text().replace("  r: 16", "  r: sixteen"))
    code, out, err = _run_in_process(["runs", "resume", run.name, "--runs-dir", str(run.path.parent)], tmp_path,
                                     {"NO_COLOR": "1"}, monkeypatch)
    assert code == 2 and "Traceback" not in out + err, out + err
    assert "config cannot be used" in err and "lora.r" in err and "sixteen" in err, err
    assert run.raw_status().state == "stopped" and not (run.path / "launch.lock").exists()


def test_train_refuses_when_the_disk_cannot_hold_the_run(tmp_path):
    from tui_tuner.config.schema import load_config_text
    from tui_tuner.fit.disk import checkpoint_bytes, run_disk_need
    from tui_tuner.rundir.diskspace import space_problem

    cfg = load_config_text(config_text()).config
    one = checkpoint_bytes(cfg)
    assert one is not None and one > 0
    need = run_disk_need(cfg)
    assert need > one * cfg.training.save_total_limit  # every kept checkpoint, the one being written and the model
    big = load_config_text(config_text().replace("tui-tuner/demo-tiny-llama", "meta-llama/Llama-3.1-8B")).config
    # Llama-3.1-8B, rank 4 on all seven projections: 32 layers x 4 x (in + out) summed = 10,485,760 parameters,
    # 4 bytes each in the adapter and 8 in AdamW's two moments, plus 1 MiB of small files.
    assert checkpoint_bytes(big) == 10_485_760 * 12 + 2**20
    problem = space_problem(tmp_path, 1 << 62, "this run")
    assert re.match(r"not enough disk space in .*: [\d.]+ \w*B free, this run needs about [\d.]+ \w*B", problem)
    assert space_problem(tmp_path, 1) is None


def test_a_stopped_worker_is_shown_stalled_with_its_process_state(tmp_path, monkeypatch):
    import signal
    import time

    from tui_tuner.rundir.runs import RunDir, process_start_time, process_state, stall_note
    from tui_tuner.rundir.status import RunStatus, write_status

    made = _fake_runs(tmp_path / "runs")
    run = RunDir(made["good"])
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        write_status(run.path, RunStatus(state="running", pid=worker.pid, pid_started=process_start_time(worker.pid),
                                         step=7, max_steps=100))
        assert stall_note(run) is None  # it just wrote its status
        os.kill(worker.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 60
        while process_state(worker.pid) != "stopped" and time.monotonic() < deadline:
            time.sleep(0.02)  # the signal is delivered asynchronously
        old = time.time() - 3600
        os.utime(run.path / "status.json", (old, old))  # no events file yet: the status is the only heartbeat
        note = stall_note(run)
        assert note is not None and note.startswith("stalled: no step or heartbeat for 60 min"), note
        assert f"pid {worker.pid}" in note and "SIGSTOP" in note and f"kill -CONT {worker.pid}" in note
        env = {"NO_COLOR": "1", "COLUMNS": "300"}
        code, out, err = _run_in_process(["runs", "ls", "--runs-dir", str(run.path.parent)], tmp_path, env, monkeypatch)
        assert code == 0 and "running (stalled)" in out and "kill -CONT" in out, out
        code, out, err = _run_in_process(["runs", "show", run.name, "--runs-dir", str(run.path.parent)], tmp_path, env,
                                         monkeypatch)
        assert code == 0 and "stalled: no step" in out, out
        os.kill(worker.pid, signal.SIGCONT)
        os.utime(run.path / "status.json")  # a step again
        assert stall_note(run) is None
    finally:
        worker.kill()
        worker.wait()


def test_run_folders_are_private(tmp_path):
    import stat

    from tui_tuner.rundir.events import EventWriter
    from tui_tuner.rundir.runs import RunDir
    from tui_tuner.rundir.status import open_private

    run = RunDir(_fake_runs(tmp_path / "runs")["good"])
    with EventWriter(run.events_path) as events:
        events.write("log", step=1, loss=1.0)
    with open_private(run.path / "train.log") as log:
        log.write(b"hello\n")
    assert stat.S_IMODE(run.path.stat().st_mode) == 0o700
    for path in run.path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path.name} is readable by others"
