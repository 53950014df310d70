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
    cfg_case("config-missing", config_text(), ["not found"], target="configs/nope.yaml"),
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
    cfg_case("template-syntax-error", with_section_value("model", "chat_template", TEMPLATE_BROKEN_SYNTAX), ["model.chat_template", "jinja"], line=2),
    cfg_case("template-unknown-filter", with_section_value("model", "chat_template", TEMPLATE_UNKNOWN_FILTER), ["model.chat_template", "shout"], line=2),
    cfg_case("template-drops-messages", with_section_value("model", "chat_template", TEMPLATE_DROPS_MESSAGES), ["model.chat_template", "every message"], line=2),
    cfg_case("template-raises", with_section_value("model", "chat_template", TEMPLATE_RAISES), ["model.chat_template", "takes no conversations"], line=2),
    cfg_case("template-sandbox-escape", with_section_value("model", "chat_template", TEMPLATE_ESCAPES_SANDBOX), ["model.chat_template", "unsafe"], line=2),
    # --- datasets
    data_case("data-broken-json-mid-file", good_jsonl() + '{"instruction": "Half a line", "output": \n' + good_jsonl(),
              ["json"], line=5),
    data_case("data-bom-mid-file", good_jsonl().encode() + b"\xef\xbb\xbf" + good_jsonl().encode(), ["json"], line=5),
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
