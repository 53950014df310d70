"""Datasets for the objectives beyond SFT: preference pairs, labelled answers, prompts only.

    tui-tuner data check data/preference_sample.jsonl --config configs/dpo-demo.yaml

Three shapes, each normalized to chat messages so the run's one chat template renders them:

    pairs       (dpo, orpo, reward)  {"prompt", "chosen", "rejected"}: strings or lists of messages;
                                     or UltraFeedback / HH-RLHF style, where `chosen` and `rejected` are
                                     whole conversations (a message list, or "\\n\\nHuman: ... \\n\\nAssistant: ..."
                                     text) that share the prompt turns
    unpaired    (kto)                {"prompt", "completion", "label"}: label true = desirable;
                                     pair files are accepted too (chosen -> true, rejected -> false)
    prompts     (grpo)               {"prompt"} (or question / instruction, or messages ending with a
                                     user turn); every other column (e.g. `answer`) is handed to the
                                     reward functions by name

Nothing raises on bad data: every problem is a `DataIssue` with the file line and what to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_tuner.data.issues import DataIssue
from tui_tuner.data.readers import read_records

Messages = list[dict[str, str]]

KIND_FOR_OBJECTIVE = {"dpo": "pairs", "orpo": "pairs", "reward": "pairs", "kto": "unpaired", "grpo": "prompts"}
KIND_LABELS = {
    "pairs": "preference pairs (prompt/chosen/rejected)",
    "pairs_conversation": "preference pairs (whole conversations in chosen/rejected, UltraFeedback/HH-RLHF style)",
    "unpaired": "labelled answers (prompt/completion/label)",
    "prompts": "prompts only (prompt + columns for the reward functions)",
}
_ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
_HH_TURN = re.compile(r"\n*(Human|Assistant):\s?")
_PROMPT_KEYS = ("prompt", "question", "instruction", "query", "problem")
_SHOWN = 5


@dataclass
class ObjectiveExample:
    """One usable record: the prompt turns, and the answers the objective compares or rewards."""

    line: int
    prompt: Messages
    chosen: Messages | None = None
    rejected: Messages | None = None
    completion: Messages | None = None
    label: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Other columns (GRPO: passed to reward functions by name)."""


@dataclass
class ObjectiveLoad:
    """A dataset file read for one objective."""

    path: Path
    objective: str
    kind: str
    """pairs, pairs_conversation, unpaired or prompts (see KIND_LABELS); `unknown` when nothing matched."""
    examples: list[ObjectiveExample] = field(default_factory=list)
    issues: list[DataIssue] = field(default_factory=list)
    records: int = 0
    row_based: bool = False
    identical_pairs: list[int] = field(default_factory=list)
    empty_sides: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    """unpaired: desirable / undesirable counts."""
    extra_columns: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(i.severity == "error" for i in self.issues) and bool(self.examples)


def objective_kind(objective: str) -> str:
    return KIND_FOR_OBJECTIVE.get(objective, "pairs")


def sniff_objective(record: Any) -> str | None:
    """The objective a record's fields suggest (`dpo` for pairs, `kto` for labelled answers), or None."""
    if not isinstance(record, dict):
        return None
    if "chosen" in record and "rejected" in record:
        return "dpo"
    if "label" in record and "completion" in record:
        return "kto"
    return None


def sniff_first_record(path: Path) -> str | None:
    """`sniff_objective` of a file's first record, reading only its start (jsonl, json, csv); None otherwise.

    Never parses more than the first 64 KB: hostile files (deep nesting, huge lines) are the
    SFT check's to report, with their line.
    """
    import csv
    import io
    import json

    suffix = path.suffix.lower()
    try:
        with path.open("r", encoding="utf-8-sig", errors="replace") as handle:
            head = handle.read(64 * 1024)
    except OSError:
        return None
    try:
        if suffix == ".jsonl":
            lines = head.split("\n")
            complete = lines[:-1] if len(head) == 64 * 1024 else lines  # a line cut at 64 KB is not parsed
            first = next((line for line in complete if line.strip()), "")
            return sniff_objective(json.loads(first)) if first else None
        if suffix == ".csv":
            header = next(csv.reader(io.StringIO(head)), [])
            return sniff_objective({name: "" for name in header})
        if suffix == ".json":  # the first record's keys, without parsing a possibly huge or deep document
            keys = set(re.findall(r'"(chosen|rejected|completion|label)"\s*:', head))
            return sniff_objective(dict.fromkeys(keys, ""))
    except (ValueError, RecursionError, StopIteration):
        return None  # unreadable or hostile: reported by the SFT check
    return None


# ---------------------------------------------------------------------------- normalizing


class _Bad(ValueError):
    """A record problem; the message says what to do."""


def _messages(value: Any, what: str) -> Messages:
    """A string (one turn, role decided by the caller) is not accepted here: a list of role/content messages."""
    if not isinstance(value, list):
        raise _Bad(f"`{what}` must be text or a list of messages, not {type(value).__name__}.")
    out: Messages = []
    for i, turn in enumerate(value, 1):
        if not isinstance(turn, dict):
            raise _Bad(f"`{what}` turn {i} is {type(turn).__name__}, not a message such as "
                       '{"role": "user", "content": "..."}.')
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if role not in _ROLES:
            raise _Bad(f"`{what}` turn {i} has role {role!r}: use system, user or assistant.")
        if not isinstance(content, str):
            raise _Bad(f"`{what}` turn {i} has no text `content`.")
        out.append({"role": _ROLES[role], "content": content})
    return out


def _hh_text(text: str) -> Messages | None:
    """HH-RLHF's "\\n\\nHuman: ...\\n\\nAssistant: ..." text as messages, or None when it is not that."""
    parts = _HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        return None
    return [{"role": "user" if who == "Human" else "assistant", "content": body.strip()}
            for who, body in zip(parts[1::2], parts[2::2])]


def _side(value: Any, what: str) -> Messages:
    """An answer side: text becomes one assistant turn; a list stays the messages it is."""
    if isinstance(value, str):
        hh = _hh_text(value)
        return hh if hh is not None else [{"role": "assistant", "content": value}]
    return _messages(value, what)


def _prompt(value: Any, what: str = "prompt") -> Messages:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return _messages(value, what)


def _split_shared(chosen: Messages, rejected: Messages) -> tuple[Messages, Messages, Messages]:
    """(shared prompt turns, chosen answer turns, rejected answer turns) of two whole conversations."""
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    while n > 0 and chosen[n - 1]["role"] == "assistant":
        n -= 1  # the answer starts at the last shared assistant turn: the prompt ends on a user turn
    return chosen[:n], chosen[n:], rejected[n:]


def _strip_prompt(prompt: Messages, side: Messages) -> Messages:
    """UltraFeedback repeats the prompt inside chosen/rejected: keep only the answer turns."""
    if len(side) > len(prompt) and side[: len(prompt)] == prompt:
        return side[len(prompt):]
    return side


def _label(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise _Bad(f"`label` is {value!r}: use true (a desirable answer) or false (an undesirable one).")


def _check_answer(side: Messages, what: str) -> None:
    if not side:
        raise _Bad(f"`{what}` has no answer turn after the prompt.")
    if side[0]["role"] != "assistant":
        raise _Bad(f"`{what}` must start with an assistant turn (the answer), not {side[0]['role']}.")


def _mapped(record: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    """`data.fields` maps standard names to the file's own: {chosen: good} reads `good` as `chosen`."""
    if not fields:
        return record
    out = dict(record)
    for standard, theirs in fields.items():
        if theirs in record and standard not in record:
            out[standard] = out.pop(theirs)
    return out


def normalize_record(record: dict[str, Any], kind: str, line: int) -> ObjectiveExample:
    """One record as an `ObjectiveExample`; raises `_Bad` with what to fix."""
    if kind in ("pairs", "pairs_conversation"):
        missing = [k for k in ("chosen", "rejected") if k not in record]
        if missing:
            raise _Bad(f"missing {' and '.join(f'`{k}`' for k in missing)}: a preference pair needs "
                       '{"prompt": ..., "chosen": ..., "rejected": ...} (found fields: '
                       f"{', '.join(sorted(record)) or 'none'}).")
        chosen, rejected = _side(record["chosen"], "chosen"), _side(record["rejected"], "rejected")
        if "prompt" in record and record["prompt"] not in (None, ""):
            prompt = _prompt(record["prompt"])
            chosen, rejected = _strip_prompt(prompt, chosen), _strip_prompt(prompt, rejected)
            if len(chosen) > 1 and chosen[0]["role"] == "user":  # a whole conversation with another prompt
                shared, chosen, rejected = _split_shared(chosen, rejected)
                prompt = shared or prompt
        else:
            prompt, chosen, rejected = _split_shared(chosen, rejected)
            if not prompt:
                raise _Bad("no `prompt`, and `chosen`/`rejected` share no prompt turns: add a `prompt` field, "
                           "or make both whole conversations that start with the same user turn.")
        _check_answer(chosen, "chosen")
        _check_answer(rejected, "rejected")
        return ObjectiveExample(line, prompt, chosen=chosen, rejected=rejected)
    if kind == "unpaired":
        if "chosen" in record and "rejected" in record:
            pair = normalize_record(record, "pairs", line)
            return pair  # unpaired into two examples by the loader
        missing = [k for k in ("prompt", "completion", "label") if k not in record]
        if missing:
            raise _Bad(f"missing {', '.join(f'`{k}`' for k in missing)}: a KTO example needs "
                       '{"prompt": ..., "completion": ..., "label": true|false} (found fields: '
                       f"{', '.join(sorted(record)) or 'none'}).")
        prompt = _prompt(record["prompt"])
        completion = _strip_prompt(prompt, _side(record["completion"], "completion"))
        _check_answer(completion, "completion")
        return ObjectiveExample(line, prompt, completion=completion, label=_label(record["label"]))
    # prompts
    key = next((k for k in _PROMPT_KEYS if k in record), None)
    if key is not None:
        prompt = _prompt(record[key], key)
        if key == "instruction" and isinstance(record.get("input"), str) and record["input"].strip():
            prompt[-1]["content"] += "\n\n" + record["input"]
    elif "messages" in record:
        prompt = _messages(record["messages"], "messages")
    else:
        raise _Bad("no prompt: GRPO needs a `prompt` (or question / instruction / messages) field "
                   f"(found fields: {', '.join(sorted(record)) or 'none'}).")
    if not prompt or prompt[-1]["role"] != "user":
        raise _Bad("the prompt must end with a user turn: the model answers it.")
    if "system" in record and isinstance(record["system"], str) and prompt[0]["role"] != "system":
        prompt.insert(0, {"role": "system", "content": record["system"]})
    skip = {key, "messages", "system", "input"}
    extra = {k: v for k, v in record.items() if k not in skip}
    return ObjectiveExample(line, prompt, extra=extra)


def _texts(messages: Messages | None) -> str:
    return "\n".join(m["content"] for m in messages or [])


def load_objective_file(path: str | Path, objective: str, data_cfg: Any = None, *,
                        shown: str | None = None) -> ObjectiveLoad:
    """Read a dataset for `objective` (dpo, orpo, kto, reward, grpo); every problem is an issue by line."""
    from tui_tuner.data.hub import as_source

    path = as_source(path, data_cfg)
    shown = shown or str(path)
    kind = objective_kind(objective)
    read = read_records(path, shown)
    load = ObjectiveLoad(path=path, objective=objective, kind=kind, issues=list(read.issues),
                         records=len(read.records), row_based=read.row_based)
    fields = dict(getattr(data_cfg, "fields", None) or {})
    conversation_pairs = 0
    extra_columns: dict[str, int] = {}

    def issue(line: int | None, message: str, severity: str = "error") -> None:
        load.issues.append(DataIssue(shown, line, message, None, severity, read.row_based))  # type: ignore[arg-type]

    for rec in read.records:
        if not isinstance(rec.value, dict):
            issue(rec.line, f"a record must be a JSON object with named fields, not {type(rec.value).__name__}.")
            continue
        record = _mapped(rec.value, fields)
        try:
            ex = normalize_record(record, kind, rec.line)
        except _Bad as exc:
            issue(rec.line, str(exc))
            continue
        if kind == "unpaired" and ex.chosen is not None:  # a pair file for KTO: both answers, labelled
            for side, label in ((ex.chosen, True), (ex.rejected, False)):
                load.examples.append(ObjectiveExample(rec.line, ex.prompt, completion=side, label=label))
        else:
            load.examples.append(ex)
        if kind == "pairs" and "prompt" not in record:
            conversation_pairs += 1
        sides = {"prompt": ex.prompt, "chosen": ex.chosen, "rejected": ex.rejected, "completion": ex.completion}
        for name, side in sides.items():
            if side is not None and not _texts(side).strip():
                load.empty_sides[name] = load.empty_sides.get(name, 0) + 1
                issue(rec.line, f"`{name}` is empty: every side of an example needs text.")
        if ex.chosen is not None and ex.rejected is not None and ex.chosen == ex.rejected and kind == "pairs":
            load.identical_pairs.append(rec.line)
        for k in ex.extra:
            extra_columns[k] = extra_columns.get(k, 0) + 1
    if load.empty_sides:
        load.examples = [e for e in load.examples
                         if all(_texts(s).strip() for s in (e.prompt, e.chosen, e.rejected, e.completion)
                                if s is not None)]
    if load.identical_pairs:
        lines = ", ".join(map(str, load.identical_pairs[:_SHOWN])) + (" ..." if len(load.identical_pairs) > _SHOWN else "")
        issue(load.identical_pairs[0], f"{len(load.identical_pairs)} pair(s) have chosen identical to rejected "
              f"(lines {lines}): they teach nothing; fix or drop them.", "warning")
    if kind == "pairs" and conversation_pairs and conversation_pairs == len(load.examples):
        load.kind = "pairs_conversation"
    if kind == "unpaired" and load.examples:
        good = sum(1 for e in load.examples if e.label)
        load.labels = {"desirable": good, "undesirable": len(load.examples) - good}
        if good == 0 or good == len(load.examples):
            issue(None, f"every example is labelled {'desirable' if good else 'undesirable'}: KTO needs both "
                  "(label true for good answers, false for bad ones).")
    load.extra_columns = sorted(extra_columns)
    if not read.records and not load.issues:
        issue(None, "no records found.")
    elif read.records and not load.examples and not any(i.severity == "error" for i in load.issues):
        issue(None, "no usable example.")
    if data_cfg is not None and getattr(data_cfg, "max_samples", None):
        load.examples = load.examples[: data_cfg.max_samples]
    return load


# ---------------------------------------------------------------------------- rendering


def conversational(ex: ObjectiveExample, kind: str) -> dict[str, Any]:
    """The trl dataset row (conversational form) for one example; trl renders it with the run's template."""
    if kind.startswith("pairs"):
        return {"prompt": ex.prompt, "chosen": ex.chosen, "rejected": ex.rejected}
    if kind == "unpaired":
        return {"prompt": ex.prompt, "completion": ex.completion, "label": bool(ex.label)}
    return {"prompt": ex.prompt, **ex.extra}


@dataclass
class SideLengths:
    """Token counts of one example: the prompt and each answer (after the prompt)."""

    line: int
    prompt: int
    chosen: int | None = None
    rejected: int | None = None
    completion: int | None = None
    first_difference: int | None = None
    """Pairs: the answer token where chosen and rejected first differ."""


def side_lengths(tokenizer: Any, template: str, ex: ObjectiveExample) -> SideLengths:
    """Token counts with the run's chat template, rendered by the one renderer."""
    from tui_tuner.chat_format.templates import render_conversation

    def ids(messages: Messages, gen: bool) -> list[int]:
        text = render_conversation(tokenizer, messages, add_generation_prompt=gen, chat_template=template)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    prompt_ids = ids(ex.prompt, True)
    out = SideLengths(ex.line, len(prompt_ids))
    answers: dict[str, list[int]] = {}
    for name in ("chosen", "rejected", "completion"):
        side = getattr(ex, name)
        if side is not None:
            full = ids(ex.prompt + side, False)
            answers[name] = full[len(prompt_ids):] if full[: len(prompt_ids)] == prompt_ids else full
            setattr(out, name, len(answers[name]))
    if "chosen" in answers and "rejected" in answers:
        a, b = answers["chosen"], answers["rejected"]
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        out.first_difference = n
    return out


@dataclass
class ObjectiveTokenStats:
    max_seq_length: int
    prompt: tuple[int, float, int]
    """(min, mean, max) tokens."""
    answers: dict[str, tuple[int, float, int]]
    truncated_lines: list[int]
    difference_cut_lines: list[int]
    """Pairs whose chosen and rejected only differ past max_seq_length: after truncation they are the same."""
    long_prompt_lines: list[int]

    def as_dict(self) -> dict[str, Any]:
        return {"max_seq_length": self.max_seq_length, "prompt": list(self.prompt),
                "answers": {k: list(v) for k, v in self.answers.items()},
                "truncated": len(self.truncated_lines), "truncated_lines": self.truncated_lines,
                "difference_cut": len(self.difference_cut_lines), "difference_cut_lines": self.difference_cut_lines,
                "long_prompts": len(self.long_prompt_lines)}


def _summary(values: list[int]) -> tuple[int, float, int]:
    return (min(values), round(sum(values) / len(values), 1), max(values)) if values else (0, 0.0, 0)


def objective_token_stats(tokenizer: Any, template: str, load: ObjectiveLoad, cfg: Any) -> ObjectiveTokenStats:
    max_len = cfg.model.max_seq_length
    prompt_limit = cfg.grpo.max_prompt_length if load.objective == "grpo" else int(max_len * cfg.dpo.max_prompt_share)
    rows = [side_lengths(tokenizer, template, ex) for ex in load.examples]
    answers = {}
    for name in ("chosen", "rejected", "completion"):
        values = [getattr(r, name) for r in rows if getattr(r, name) is not None]
        if values:
            answers[name] = _summary(values)
    truncated, cut, long_prompt = [], [], []
    for r in rows:
        longest = r.prompt + max(r.chosen or 0, r.rejected or 0, r.completion or 0)
        if load.objective == "grpo":
            longest = r.prompt + cfg.grpo.max_completion_length
        if longest > max_len:
            truncated.append(r.line)
        if r.first_difference is not None and r.prompt + r.first_difference >= max_len:
            cut.append(r.line)
        if r.prompt > prompt_limit:
            long_prompt.append(r.line)
    return ObjectiveTokenStats(max_len, _summary([r.prompt for r in rows]), answers, truncated, cut, long_prompt)


def _lines(lines: list[int]) -> str:
    return ", ".join(map(str, lines[:_SHOWN])) + (" ..." if len(lines) > _SHOWN else "")


def token_issues(stats: ObjectiveTokenStats, load: ObjectiveLoad, shown: str) -> list[DataIssue]:
    out = []
    n = len(load.examples)
    rb = load.row_based
    if stats.difference_cut_lines:
        severity = "error" if len(stats.difference_cut_lines) == n else "warning"
        out.append(DataIssue(shown, stats.difference_cut_lines[0], f"{len(stats.difference_cut_lines)} of {n} pairs "
                             f"only differ after model.max_seq_length={stats.max_seq_length} tokens (lines "
                             f"{_lines(stats.difference_cut_lines)}): truncation cuts the difference off, so chosen "
                             "and rejected look the same. Raise max_seq_length or shorten the prompts.",
                             None, severity, rb))  # type: ignore[arg-type]
    if stats.truncated_lines:
        what = ("prompt + max_completion_length" if load.objective == "grpo" else "prompt + answer")
        out.append(DataIssue(shown, stats.truncated_lines[0], f"{len(stats.truncated_lines)} of {n} examples have "
                             f"{what} longer than model.max_seq_length={stats.max_seq_length} tokens (lines "
                             f"{_lines(stats.truncated_lines)}) and will be cut at the end.", None, "warning", rb))
    if stats.long_prompt_lines:
        limit = "grpo.max_prompt_length" if load.objective == "grpo" else "dpo.max_prompt_share of max_seq_length"
        out.append(DataIssue(shown, stats.long_prompt_lines[0], f"{len(stats.long_prompt_lines)} prompt(s) are longer "
                             f"than {limit} (lines {_lines(stats.long_prompt_lines)}): little room is left for "
                             "the answers.", None, "warning", rb))
    return out


@dataclass
class ObjectiveFileReport:
    """`data check` / `config check` for a non-SFT dataset file (duck-types `report.FileReport`)."""

    load: ObjectiveLoad
    shown: str
    config_key: str | None = None
    tokens: ObjectiveTokenStats | None = None
    token_issues: list[DataIssue] = field(default_factory=list)

    @property
    def issues(self) -> list[DataIssue]:
        return self.load.issues + self.token_issues

    def as_dict(self) -> dict[str, Any]:
        load = self.load
        return {
            "file": self.shown, "config_key": self.config_key, "objective": load.objective, "format": load.kind,
            "format_label": KIND_LABELS.get(load.kind, load.kind), "examples": len(load.examples),
            "records": load.records, "identical_pairs": len(load.identical_pairs),
            "identical_pair_lines": load.identical_pairs, "empty_sides": load.empty_sides, "labels": load.labels,
            "extra_columns": load.extra_columns, "tokens": self.tokens.as_dict() if self.tokens else None,
            "errors": sum(1 for i in self.issues if i.severity == "error"),
            "warnings": sum(1 for i in self.issues if i.severity == "warning"),
            "issues": [i.as_dict() for i in self.issues],
        }

    def summary_lines(self, tokenizer_name: str | None, template_name: str | None, note: str | None) -> list[str]:
        load = self.load
        role = f" ({self.config_key})" if self.config_key else ""
        lines = [f"dataset {self.shown}{role}: {KIND_LABELS.get(load.kind, load.kind)} for objective "
                 f"{load.objective}, {len(load.examples)} example(s) of {load.records} record(s)"]
        t = self.tokens
        if t is not None:
            who = f" [{tokenizer_name}, {template_name} template]" if tokenizer_name else ""
            sides = "; ".join(f"{k} {v[0]}/{v[1]:g}/{v[2]}" for k, v in t.answers.items())
            lines.append(f"  tokens{who} min/mean/max: prompt {t.prompt[0]}/{t.prompt[1]:g}/{t.prompt[2]}"
                         + (f"; {sides}" if sides else "")
                         + f"; {len(t.truncated_lines)} over max_seq_length {t.max_seq_length}")
        elif note:
            lines.append(f"  tokens: {note}")
        extras = []
        if load.kind.startswith("pairs"):
            extras.append(f"chosen == rejected: {len(load.identical_pairs)}")
        if load.labels:
            extras.append(f"desirable {load.labels['desirable']}, undesirable {load.labels['undesirable']}")
        if load.extra_columns:
            extras.append("columns for reward functions: " + ", ".join(load.extra_columns))
        extras.append("empty sides: " + (", ".join(f"{k} {n}" for k, n in load.empty_sides.items()) or "none"))
        lines.append("  " + "; ".join(extras))
        errors = sum(1 for i in self.issues if i.severity == "error")
        lines.append(f"  {errors} error(s), {len(self.issues) - errors} warning(s)")
        return lines


def check_objective_file(path: str | Path, cfg: Any, objective: str, tokenizer: Any = None, *,
                         config_key: str | None = None, chat_template: str | None = None,
                         shown: str | None = None) -> ObjectiveFileReport:
    """Load and check one dataset file (or hub dataset) for `objective`, with token lengths when a tokenizer is given."""
    from tui_tuner.data.hub import as_source

    path = as_source(path, getattr(cfg, "data", None))
    shown = shown or str(path)
    load = load_objective_file(path, objective, getattr(cfg, "data", None), shown=shown)
    report = ObjectiveFileReport(load, shown, config_key)
    if tokenizer is not None and chat_template and load.examples and cfg is not None:
        report.tokens = objective_token_stats(tokenizer, chat_template, load, cfg)
        report.token_issues = token_issues(report.tokens, load, shown)
    return report
