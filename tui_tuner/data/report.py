"""The dataset report behind `tui-tuner data check` and `tui-tuner config check`.

Format detected, example count, token-length statistics (when a tokenizer is at hand),
how many examples `max_seq_length` would truncate, duplicates, empty fields, and every
issue with its line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_tuner.config.starter import missing_quickstart_data_fix
from tui_tuner.data.formats import FORMAT_LABELS, mapping_problems, read_as
from tui_tuner.data.issues import DataIssue, capped
from tui_tuner.data.loader import DatasetLoad, load_dataset_file

_SHOWN_LINES = 5


@dataclass
class TokenStats:
    """Token lengths of a dataset's examples under one tokenizer and chat template."""

    min: int
    mean: float
    p95: int
    max: int
    max_seq_length: int
    truncated: int
    """Examples longer than max_seq_length (cut at the end when training)."""
    truncated_lines: list[int]
    no_answer_left: int
    """Truncated examples that lose every answer token, so they teach nothing."""
    total_tokens: int
    trained_tokens: int
    """Tokens in the loss after truncation (the answers only, with completion-only loss)."""
    estimated_lines: list[int] = field(default_factory=list)
    """Examples over the per-example text budget: only a prefix was tokenized, their length is estimated."""
    refused: list[tuple[int, str]] = field(default_factory=list)
    """(line, the template's message) for examples the chat template refuses to render."""

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["refused"] = [{"line": line, "message": message} for line, message in self.refused]
        return out


def tokenize_within_budget(tokenizer: Any, conversation: list[dict[str, str]], max_seq_length: int,
                           completion_only_loss: bool, chat_template: str | None) -> tuple[dict[str, Any], bool]:
    """`tokenize_conversation`, with messages over `text_budget` cut first; (encoding, whether it was estimated).

    Such an example is far longer than max_seq_length tokens: tokenizing it all costs time and
    memory for nothing (training cuts it), so a prefix of each message is tokenized and the
    length scaled. Its first max_seq_length ids and labels are those of the whole example.
    """
    ((enc, estimated),) = tokenize_many_within_budget(tokenizer, [conversation], max_seq_length, completion_only_loss,
                                                      chat_template)
    if isinstance(enc, Exception):
        raise enc
    return enc, estimated


def tokenize_many_within_budget(tokenizer: Any, conversations: list[list[dict[str, str]]], max_seq_length: int,
                                completion_only_loss: bool, chat_template: str | None
                                ) -> list[tuple[dict[str, Any] | Exception, bool]]:
    """`tokenize_within_budget` for many conversations, tokenized in one batch.

    A conversation the chat template refuses is its `ChatTemplateError` in the result.
    """
    from tui_tuner.data.tokenize import tokenize_conversations

    budget = text_budget(max_seq_length)
    prepared: list[list[dict[str, str]]] = []
    scales: list[tuple[int, int] | None] = []  # (whole size, size tokenized) of a cut conversation
    for conversation in conversations:
        size = sum(len(m["content"]) for m in conversation)
        if size <= budget:
            prepared.append(conversation)
            scales.append(None)
            continue
        cut = [{**m, "content": m["content"][:budget]} for m in conversation]
        prepared.append(cut)
        scales.append((size, sum(len(m["content"]) for m in cut) or 1))
    out: list[tuple[dict[str, Any] | Exception, bool]] = []
    for enc, scale in zip(tokenize_conversations(tokenizer, prepared, max_seq_length, completion_only_loss,
                                                 chat_template), scales):
        if scale is None or isinstance(enc, Exception):
            out.append((enc, False))
            continue
        size, kept = scale
        enc["length"] = max(enc["length"], round(enc["length"] * size / kept))
        enc["truncated"] = enc["truncated"] or enc["length"] > max_seq_length
        out.append((enc, True))
    return out


def token_stats(tokenizer: Any, examples: list[list[dict[str, str]]], lines: list[int], max_seq_length: int,
                completion_only_loss: bool, chat_template: str | None) -> TokenStats | None:
    """Tokenize every example as training will and summarise the lengths (None when there are no examples)."""
    from tui_tuner.chat_format.templates import ChatTemplateError

    if not examples:
        return None
    lengths, truncated_lines, no_answer, total, trained, estimated = [], [], 0, 0, 0, []
    refused: list[tuple[int, str]] = []
    for conversation, line in zip(examples, lines):
        try:
            enc, was_estimated = tokenize_within_budget(tokenizer, conversation, max_seq_length, completion_only_loss,
                                                        chat_template)
        except ChatTemplateError as exc:
            refused.append((line, template_refusal(exc, conversation)))
            continue
        if was_estimated:
            estimated.append(line)
        lengths.append(enc["length"])
        total += min(enc["length"], max_seq_length)
        trained += enc["trained_tokens"]
        if enc["truncated"]:
            truncated_lines.append(line)
            if enc["trained_tokens"] == 0:
                no_answer += 1
    ordered = sorted(lengths) or [0]
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return TokenStats(min=ordered[0], mean=round(sum(lengths) / max(1, len(lengths)), 1), p95=p95, max=ordered[-1],
                      max_seq_length=max_seq_length, truncated=len(truncated_lines), truncated_lines=truncated_lines,
                      no_answer_left=no_answer, total_tokens=total, trained_tokens=trained, estimated_lines=estimated,
                      refused=refused)


def template_refusal(exc: Exception, conversation: list[dict[str, str]]) -> str:
    """A data-check message for a conversation the model's chat template refuses, saying what to change."""
    said = str(exc)
    lowered = said.lower()
    if getattr(exc, "raised_by_template", False):
        head = f"the model's chat template refuses this conversation: \"{said}\""
    else:
        head = f"the model's chat template cannot render this conversation ({said})"
    if "alternate" in lowered:
        hint = ("this model demands strictly alternating user/assistant turns after an optional system prompt "
                "(Mistral for example): merge consecutive turns of the same role")
    elif "system" in lowered and any(m.get("role") == "system" for m in conversation):
        hint = ("this model has no system role (Gemma 1/2 for example): remove the system prompt, or put its text "
                "at the start of the first user turn")
    else:
        hint = "change the example, or pick another template with model.chat_template"
    return f"{head}; {hint}."


CHARS_PER_TOKEN_BOUND = 32
"""No tokenizer averages this many characters per token on real text, so a message this many
times max_seq_length characters long is certainly cut in training."""


def text_budget(max_seq_length: int) -> int:
    """Characters per message that `data check` tokenizes; the rest of a longer message is estimated."""
    return max(64 * 1024, max_seq_length * CHARS_PER_TOKEN_BOUND)


@dataclass
class FileReport:
    """The check of one dataset file."""

    load: DatasetLoad
    shown: str
    config_key: str | None = None
    """`data.train` / `data.eval` when the file came from a config."""
    tokens: TokenStats | None = None
    token_issues: list[DataIssue] = field(default_factory=list)

    @property
    def issues(self) -> list[DataIssue]:
        return self.load.issues + self.token_issues

    def as_dict(self) -> dict[str, Any]:
        load = self.load
        return {
            "file": self.shown, "config_key": self.config_key, "format": load.format,
            "format_label": FORMAT_LABELS.get(load.format, load.format),
            "read_as": read_as(load.format, load.examples), "examples": load.count,
            "records": load.records, "limited_to": load.limited_to, "format_counts": load.format_counts,
            "duplicates": len(load.duplicates), "duplicate_lines": [list(p) for p in load.duplicates],
            "empty_fields": load.empty_fields, "unused_fields": load.unused_fields,
            "tokens": self.tokens.as_dict() if self.tokens else None,
            "errors": sum(1 for i in self.issues if i.severity == "error"),
            "warnings": sum(1 for i in self.issues if i.severity == "warning"),
            "issues": [i.as_dict() for i in self.issues],
        }


@dataclass
class DataReport:
    """Everything `data check` / `config check` say about the datasets of a run."""

    files: list[FileReport] = field(default_factory=list)
    config_issues: list[Any] = field(default_factory=list)
    """`ConfigIssue`s that belong to the config rather than a data line (missing file, bad template)."""
    tokenizer_name: str | None = None
    chat_template_name: str | None = None
    tokenizer_note: str | None = None
    """Why token lengths are missing, when they are."""

    @property
    def issues(self) -> list[DataIssue]:
        return [i for f in self.files for i in f.issues]

    @property
    def ok(self) -> bool:
        return not any(i.severity == "error" for i in self.issues) and \
            not any(i.severity == "error" for i in self.config_issues)

    def issues_as_config_issues(self, limit: int | None = None) -> list[Any]:
        """Every issue as a `ConfigIssue` (data lines keep their file and line); `limit` caps the data issues."""
        from tui_tuner.config.schema import ConfigIssue

        out = list(self.config_issues)
        for report in self.files:
            chosen = capped(report.issues, limit)[0] if limit is not None else report.issues
            for issue in chosen:
                message = issue.message
                line = issue.line
                if issue.row_based and line is not None:
                    message, line = f"row {line}: {message}", None
                elif issue.column is not None:
                    message = f"column {issue.column}: {message}"
                out.append(ConfigIssue(key=report.config_key or "", message=message, line=line,
                                       column=issue.column, file=issue.file, severity=issue.severity))
        return out

    def capped_issues(self, limit: int) -> list[DataIssue]:
        """Each file's first `limit` issues, errors first (for printing; `left_out` counts the rest)."""
        return [i for f in self.files for i in capped(f.issues, limit)[0]]

    def left_out(self, limit: int) -> int:
        """How many data issues a list capped at `limit` per file leaves out."""
        return sum(capped(f.issues, limit)[1] for f in self.files)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "tokenizer": self.tokenizer_name, "chat_template": self.chat_template_name,
            "tokenizer_note": self.tokenizer_note, "files": [f.as_dict() for f in self.files],
            "config_issues": [i.as_dict() for i in self.config_issues],
        }

    def summary_text(self) -> str:
        """A few lines per file for the terminal."""
        lines = []
        for report in self.files:
            if hasattr(report, "summary_lines"):  # preference / KTO / prompt-only data (data.preference)
                lines.extend(report.summary_lines(self.tokenizer_name, self.chat_template_name, self.tokenizer_note))
                continue
            load = report.load
            role = f" ({report.config_key})" if report.config_key else ""
            count = f"{load.count} example(s)"
            if load.limited_to is not None:
                count += f" (data.max_samples keeps the first {load.limited_to})"
            if load.records != load.count and load.limited_to is None:
                count += f" usable of {load.records} record(s)"
            lines.append(f"dataset {report.shown}{role}: {FORMAT_LABELS.get(load.format, load.format)}, {count}")
            if load.format == "prompt_completion" and load.examples:
                lines.append(f"  read as {read_as(load.format, load.examples)}")
            t = report.tokens
            if t is not None:
                who = f" [{self.tokenizer_name}, {self.chat_template_name} template]" if self.tokenizer_name else ""
                lines.append(f"  tokens{who}: min {t.min}, mean {t.mean:g}, p95 {t.p95}, max {t.max}; "
                             f"{t.truncated} longer than max_seq_length {t.max_seq_length}; "
                             f"{t.trained_tokens} of {t.total_tokens} tokens in the loss")
            elif self.tokenizer_note:
                lines.append(f"  tokens: {self.tokenizer_note}")
            extras = [f"duplicates: {len(load.duplicates)}"]
            extras.append("empty fields: " + (", ".join(f"{k} {n}" for k, n in load.empty_fields.items()) or "none"))
            if load.unused_fields:
                extras.append("ignored fields: " + ", ".join(load.unused_fields))
            lines.append("  " + "; ".join(extras))
            errors = sum(1 for i in report.issues if i.severity == "error")
            warnings = sum(1 for i in report.issues if i.severity == "warning")
            lines.append(f"  {errors} error(s), {warnings} warning(s)")
        return "\n".join(lines)


def _shown_path(path: Path) -> str:
    """The path relative to the working folder when it is inside it, else as given."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _token_issues(report: FileReport) -> list[DataIssue]:
    t = report.tokens
    if t is None:
        return []
    refused = [DataIssue(report.shown, line, message, None, "error", report.load.row_based)
               for line, message in t.refused]
    if not t.truncated:
        return refused
    if t.estimated_lines:
        lines = ", ".join(map(str, t.estimated_lines[:_SHOWN_LINES])) + (" ..." if len(t.estimated_lines) > _SHOWN_LINES else "")
        first = [DataIssue(report.shown, t.estimated_lines[0], f"{len(t.estimated_lines)} example(s) hold more than "
                           f"{text_budget(t.max_seq_length):,} characters in one message (lines {lines}): only that "
                           "much was tokenized and their length is estimated; training cuts them at "
                           "model.max_seq_length anyway. Split or shorten them.", None, "warning", report.load.row_based)]
    else:
        first = []
    lines = ", ".join(map(str, t.truncated_lines[:_SHOWN_LINES])) + (" ..." if t.truncated > _SHOWN_LINES else "")
    out = [DataIssue(report.shown, t.truncated_lines[0], f"{t.truncated} of {report.load.count} examples "
                     f"are longer than model.max_seq_length={t.max_seq_length} tokens (longest {t.max}) and will "
                     f"be cut at the end (lines {lines}); raise max_seq_length or shorten them.", None, "warning",
                     report.load.row_based)]
    out = first + out
    if t.no_answer_left and t.no_answer_left >= report.load.count:
        # Training would start, load the model, then find nothing to learn: refuse up front.
        out.append(DataIssue(report.shown, t.truncated_lines[0], f"every example loses its whole answer at "
                             f"model.max_seq_length={t.max_seq_length} tokens (longest example {t.max}), so there "
                             f"is nothing to train on: raise max_seq_length to at least {t.max} or shorten the "
                             "prompts.", None, "error", report.load.row_based))
    elif t.no_answer_left:
        out.append(DataIssue(report.shown, None, f"{t.no_answer_left} truncated example(s) lose their whole answer "
                             "and teach nothing: raise max_seq_length or shorten their prompts.", None, "warning"))
    return refused + out


def _objective_for(path: Any, cfg: Any) -> str:
    """The config's objective; without one, a file of preference pairs or labelled answers says which it is."""
    objective = getattr(cfg, "objective", "sft") if cfg is not None else "sft"
    if objective != "sft" or (cfg is not None and "objective" in cfg.model_fields_set):
        return objective
    from tui_tuner.data.hub import HubSource
    from tui_tuner.data.preference import sniff_first_record, sniff_objective

    if isinstance(path, HubSource):
        if path.file:
            return "sft"  # a hub file is sniffed once the loader has it; a config names its objective
        from tui_tuner.data.readers import RecordStream

        first = next(iter(RecordStream(path)), None)  # loads the dataset, which the check reads anyway
        return (sniff_objective(first.value) if first is not None and isinstance(first.value, dict) else None) or "sft"
    return sniff_first_record(path) or "sft"


def check_file(path: str | Path, cfg: Any = None, tokenizer: Any = None, *, config_key: str | None = None,
               chat_template: str | None = None, shown: str | None = None, cache: bool = False,
               progress: Any = None) -> FileReport:
    """Load and check one dataset file under a `RunConfig` (or defaults), with token stats when `tokenizer` is given.

    The file is streamed: only the first `HEAD_KEPT` conversations are kept (`report.load.examples`; `count`
    says how many there are). With a tokenizer, `cache=True` also stores the token ids for
    training (`tui_tuner.data.tokenized`); `progress(what, done, total)` hears how far it got.
    """
    from tui_tuner.data.hub import HubSource, as_source

    path = as_source(path, getattr(cfg, "data", None))
    shown = shown or (path.shown if isinstance(path, HubSource) else _shown_path(path))
    objective = _objective_for(path, cfg)
    if objective != "sft":
        from tui_tuner.data.preference import check_objective_file

        return check_objective_file(path, cfg, objective, tokenizer, config_key=config_key,  # type: ignore[return-value]
                                    chat_template=chat_template, shown=shown)
    data_cfg = getattr(cfg, "data", None)
    if tokenizer is None:
        load = load_dataset_file(path, data_cfg, shown=shown, report_mapping=config_key is None, keep_examples=False)
        return FileReport(load=load, shown=shown, config_key=config_key)
    from tui_tuner.data.tokenized import tokenize_file

    result = tokenize_file(path, cfg, tokenizer, chat_template, shown=shown, report_mapping=config_key is None,
                           cache=cache, progress=progress)
    report = FileReport(load=result.load, shown=shown, config_key=config_key, tokens=result.tokens)
    report.token_issues = _token_issues(report)
    return report


def resolve_template_for_report(cfg: Any, tokenizer: Any) -> tuple[str | None, str | None, str | None]:
    """(template source, a short name for it, error message) for `cfg.model.chat_template`."""
    from tui_tuner.chat_format.templates import BUILTIN_TEMPLATES, ChatTemplateError, resolve_chat_template, tokenizer_template

    choice = cfg.model.chat_template if cfg is not None else "auto"
    try:
        source = resolve_chat_template(cfg.model if cfg is not None else None, tokenizer)
    except ChatTemplateError as exc:
        return None, None, str(exc)
    if choice in BUILTIN_TEMPLATES:
        name = choice
    elif choice == "auto":
        name = "the tokenizer's own" if tokenizer_template(tokenizer) else "chatml (the tokenizer has none)"
    else:
        name = "custom"
    return source, name, None


def check_config_dataset(loaded: Any, tokenizer: Any = None, *, cache: bool = False,
                         progress: Any = None, download: bool = True) -> DataReport:
    """Check the datasets a loaded config names (`data.train`, `data.eval`).

    `cache=True` keeps the token ids for the run's worker (see `check_file`). A hub dataset
    is downloaded when missing unless `download=False` (the TUI's live check), which reads
    only what is already on this machine.

    Relative paths resolve against `loaded.base_dir`. A missing file, a bad `data.fields`
    entry or a chat template that cannot render become `ConfigIssue`s on the config's
    line; problems inside a data file keep the file's own line numbers.
    """
    from tui_tuner.config.schema import ConfigIssue, yaml_positions

    report = DataReport()
    cfg = getattr(loaded, "config", None)
    if cfg is None:
        return report
    config_file = str(loaded.path) if getattr(loaded, "path", None) else None
    positions: dict = {}
    if loaded.path is not None:
        try:
            positions = yaml_positions(Path(loaded.path).read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError):
            positions = {}

    def config_issue(key: str, message: str, severity: str = "error") -> None:
        path = tuple(key.split("."))
        line = col = None
        while path and line is None:
            line, col = positions.get(path, (None, None))
            path = path[:-1]
        report.config_issues.append(ConfigIssue(key=key, message=message, line=line, column=col,
                                                file=config_file, severity=severity))

    for key, problem in mapping_problems(cfg.data.fields):
        config_issue(key, problem)

    template = None
    if tokenizer is not None:
        template, report.chat_template_name, problem = resolve_template_for_report(cfg, tokenizer)
        report.tokenizer_name = Path(str(getattr(tokenizer, "name_or_path", "") or "tokenizer")).name
        if problem:
            config_issue("model.chat_template", problem)
            tokenizer = None
    else:
        report.tokenizer_note = ("not computed here; `tui-tuner data check FILE --config CONFIG` measures them "
                                 "with the model's tokenizer")

    from tui_tuner.data.hub import HubSource, cached_here, data_source, hub_offline, not_here_message, pull_command

    base = loaded.base_dir
    local_files = 0  # local files among train/eval: hub settings do nothing for them
    for key in ("train", "eval"):
        value = getattr(cfg.data, key)
        if value is None:
            continue
        path = data_source(value, base, cfg.data, role=key, download=download)
        if isinstance(path, HubSource):
            if not download and not cached_here(path):
                if hub_offline():
                    config_issue(f"data.{key}", not_here_message(path, "the hub is switched off (HF_HUB_OFFLINE=1)"))
                else:
                    config_issue(f"data.{key}", f"hub dataset `{path.shown}` is not downloaded yet: training "
                                                f"downloads it, or run `{pull_command(path)}` first to check it.",
                                 "warning")
                continue
        elif not path.exists():
            fix = (missing_quickstart_data_fix(value)
                   or "Fix the path or create the file (or name a hub dataset as ORG/NAME); see data/README.md "
                      "for the formats.")
            config_issue(f"data.{key}", f"dataset file not found: {path} (`{value}` resolved against {base}). {fix}")
            continue
        else:
            local_files += 1
        report.files.append(check_file(path, cfg, tokenizer, config_key=f"data.{key}", chat_template=template,
                                       cache=cache, progress=progress))
    hub_settings = [k for k, default in (("subset", None), ("split", "train"), ("eval_dataset_split", "test"))
                    if getattr(cfg.data, k) != default and k in cfg.data.model_fields_set]
    if hub_settings and local_files == sum(1 for k in ("train", "eval") if getattr(cfg.data, k)):
        config_issue(f"data.{hub_settings[0]}", f"data.{hub_settings[0]} applies to hub datasets (ORG/NAME), but "
                                                "the data here are local files: it is ignored.", "warning")
    return report


def load_tokenizer_if_local(model_cfg: Any) -> tuple[Any, str | None]:
    """The model's tokenizer when it is on this machine (the demo model, a folder, the HF cache), else (None, why).

    Never downloads: the hub is asked with `local_files_only=True`.
    """
    from tui_tuner.config.schema import DEMO_MODEL_ID
    from tui_tuner.core.quiet import quiet_check_noise

    name = model_cfg.name_or_path
    quiet_check_noise()  # the check reports lengths itself; the library's own warning only interrupts it
    try:
        from transformers import AutoTokenizer

        from tui_tuner.models.demo import is_builtin_model, resolve_model_path

        if name == DEMO_MODEL_ID or is_builtin_model(name):
            source = resolve_model_path(name)
        else:
            source = str(Path(name).expanduser()) if Path(name).expanduser().is_dir() else name
        tokenizer = AutoTokenizer.from_pretrained(source, revision=model_cfg.revision, local_files_only=True,
                                                  trust_remote_code=model_cfg.trust_remote_code)
        return tokenizer, None
    except Exception as exc:  # noqa: BLE001 - any failure only means "no token stats"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, (f"skipped: the tokenizer of `{name}` is not available on this machine ({first[:160]}); "
                      "download the model first to measure token lengths")
