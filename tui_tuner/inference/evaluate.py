"""Evaluate a run (or checkpoint) on held-out data: loss, perplexity, and answers scored against references.

    tui-tuner eval quickstart                           # the run's eval data, else data/heldout.jsonl
    tui-tuner eval quickstart --data my_questions.jsonl --compare-base --checkpoint 50

For every held-out conversation whose last message is an assistant answer, the model is
prompted with everything before it (greedy decoding) and the answer is scored against the
reference with `tui_tuner.inference.metrics` (exact match, token F1, ROUGE-L, possible hallucination).
The held-out loss is the mean cross-entropy over the answer tokens, tokenized exactly as
training tokenized them (`tui_tuner.data.tokenize_conversation`); perplexity is exp(loss).
With `compare_base` the same prompts go through the base weights (the adapter switched
off). The report is saved in `<run>/eval/` as JSON and markdown.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from tui_tuner.config.schema import project_dir_for
from tui_tuner.inference.chat_model import ChatModel, GenerationSettings, ModelSource, SourceError
from tui_tuner.inference.metrics import score_answer
from tui_tuner.rundir.files import CONFIG_FILE, EVAL_DIR

EVAL_SETTINGS = GenerationSettings(temperature=0.0, max_new_tokens=128, repetition_penalty=1.0)
"""Greedy decoding: the report is reproducible and base vs tuned differ only by the weights."""


@dataclass
class ScoredAnswer:
    """One model's answer to one prompt, with its scores."""

    answer: str
    exact_match: float
    token_f1: float
    rouge_l: float
    possible_hallucination: bool
    hallucination_reason: str
    tokens: int
    finish_reason: str


@dataclass
class PromptEval:
    """One held-out prompt: the reference and each model's scored answer."""

    index: int
    line: int | None
    prompt: str
    reference: str
    answers: dict[str, ScoredAnswer] = field(default_factory=dict)


@dataclass
class ModelSummary:
    """Aggregates for one model (tuned or base)."""

    loss: float | None
    perplexity: float | None
    loss_tokens: int
    exact_match: float | None
    token_f1: float | None
    rouge_l: float | None
    possible_hallucinations: int
    answered: int


@dataclass
class EvalReport:
    """A whole evaluation, as saved to `<run>/eval/`."""

    source: str
    data: str
    examples: int
    created: str
    settings: dict[str, Any]
    models: dict[str, ModelSummary] = field(default_factory=dict)
    prompts: list[PromptEval] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    objective: dict[str, Any] = field(default_factory=dict)
    """DPO/ORPO/KTO/reward/GRPO runs: their own scores per model (see `tui_tuner.inference.objective_eval`)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------- which data


def split_heldout(examples: list, fraction: float, seed: int) -> list:
    """The examples training held out with `data.eval_split` (the same shuffle as the training worker)."""
    if fraction <= 0 or len(examples) <= 1:
        return []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, int(round(len(order) * fraction)))
    held = set(order[:n_eval])
    return [e for i, e in enumerate(examples) if i in held]


def eval_examples(source: ModelSource, data: str | Path | None = None) -> tuple[list[list[dict[str, str]]], list[int | None], str]:
    """(conversations, their line numbers, description) to evaluate on.

    `data` when given; else the run's `data.eval`; else its `data.eval_split` share of the
    training file; else `data/heldout.jsonl` of the current project. Raises SourceError when
    there is nothing, or the file has errors.
    """
    from tui_tuner.data.hub import data_source

    cfg = source.config
    data_cfg = cfg.data if cfg else None
    if data is not None:
        path = data_source(str(data), Path.cwd(), data_cfg, role="eval")
    elif cfg is not None and cfg.data.eval:
        path = data_source(cfg.data.eval, project_dir_for(source.run_dir / CONFIG_FILE), data_cfg, role="eval")
    elif cfg is not None and cfg.data.eval_split > 0:
        train = data_source(cfg.data.train, project_dir_for(source.run_dir / CONFIG_FILE), data_cfg)
        loaded = _load(train, data_cfg)
        examples = loaded.examples[: cfg.data.max_samples] if cfg.data.max_samples else loaded.examples
        lines = loaded.lines[: len(examples)]
        held = split_heldout(list(zip(examples, lines)), cfg.data.eval_split, cfg.training.seed)
        return [e for e, _ in held], [ln for _, ln in held], f"{train} (the {cfg.data.eval_split:.0%} held out in training)"
    else:
        path = Path("data/heldout.jsonl")
        if not path.is_file():
            raise SourceError("no evaluation data: the run has no data.eval or data.eval_split and there is no "
                              "data/heldout.jsonl here. Pass --data FILE (any format `tui-tuner data check` accepts).")
    loaded = _load(path, data_cfg)
    return list(loaded.examples), list(loaded.lines) or [None] * len(loaded.examples), str(path)


def _load(path: Any, data_cfg: Any):
    from tui_tuner.data import load_dataset_file

    if isinstance(path, Path) and not path.is_file():
        raise SourceError(f"{path}: file not found.")
    # max_samples limits training, not evaluation
    cfg = data_cfg.model_copy(update={"max_samples": None}) if data_cfg is not None else None
    loaded = load_dataset_file(path, cfg)
    if not loaded.ok:
        first = loaded.errors[0] if loaded.errors else None
        detail = first.format() if first is not None and hasattr(first, "format") else "no usable example"
        raise SourceError(f"{path} cannot be evaluated on: {detail}. `tui-tuner data check {path}` lists every problem.")
    return loaded


# ---------------------------------------------------------------------------- loss


def heldout_loss(chat: ChatModel, examples: list[list[dict[str, str]]], *, use_adapter: bool = True,
                 max_seq_length: int | None = None, completion_only_loss: bool = True) -> tuple[float | None, int]:
    """(mean loss per answer token, number of tokens) over `examples`, tokenized as in training.

    Computed by the chat's own engine: transformers, or MLX for MLX runs (on the base MLX trained on)."""
    from tui_tuner.data import tokenize_conversation

    cfg = chat.source.config
    max_len = max_seq_length or (cfg.model.max_seq_length if cfg else chat.context_length)
    max_len = min(max_len, chat.context_length)
    only_answers = cfg.data.completion_only_loss if cfg else completion_only_loss
    total, count = 0.0, 0
    with chat._lock, chat.adapter(use_adapter):
        for messages in examples:
            enc = tokenize_conversation(chat.tokenizer, messages, max_len, only_answers,
                                        chat_template=chat.chat_template)
            loss_sum, n = chat.loss_sum(enc["input_ids"], enc["labels"])
            total += loss_sum
            count += n
    return (total / count if count else None), count


# ---------------------------------------------------------------------------- the evaluation


def _prompt_text(messages: list[dict[str, str]]) -> str:
    return "\n".join(m["content"] for m in messages if m["role"] in ("system", "user"))


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def evaluate(chat: ChatModel, examples: list[list[dict[str, str]]], lines: list[int | None], data_label: str, *,
             compare_base: bool = False, settings: GenerationSettings | None = None, limit: int | None = None,
             progress: Callable[[int, int, str], None] = lambda done, total, what: None) -> EvalReport:
    """Loss, perplexity and scored answers for the tuned model (and the base with `compare_base`)."""
    settings = settings or EVAL_SETTINGS
    if compare_base and not chat.has_adapter:
        raise SourceError(f"{chat.source.label} has no adapter, so there is no base model to compare with.")
    if limit:
        examples, lines = examples[:limit], lines[:limit]
    models = ["tuned", "base"] if compare_base else ["tuned"]
    report = EvalReport(chat.source.label, data_label, len(examples), time.strftime("%Y-%m-%dT%H:%M:%S"),
                        {k: v for k, v in asdict(settings).items() if v is not None}, notes=list(chat.notes))
    scorable = [(i, conv) for i, conv in enumerate(examples)
                if len(conv) >= 2 and conv[-1]["role"] == "assistant" and conv[-1]["content"].strip()]
    if len(scorable) < len(examples):
        report.notes.append(f"{len(examples) - len(scorable)} example(s) do not end with an assistant answer: "
                            "used for the loss only")
    prompts = {i: PromptEval(i, lines[i] if i < len(lines) else None, _prompt_text(conv[:-1]), conv[-1]["content"])
               for i, conv in scorable}
    total = len(models) * (len(scorable) + 1)
    done = 0
    for model in models:
        use_adapter = model == "tuned"
        progress(done, total, f"{model}: held-out loss")
        loss, n_tokens = heldout_loss(chat, examples, use_adapter=use_adapter)
        done += 1
        for i, conv in scorable:
            progress(done, total, f"{model}: answering {done}/{total}")
            result = chat.answer(conv[:-1], settings, use_adapter=use_adapter)
            if result.error:
                raise RuntimeError(f"generation failed on example {i + 1}: {result.error}")
            p = prompts[i]
            score = score_answer(result.text, p.reference, p.prompt)
            p.answers[model] = ScoredAnswer(result.text, score.exact_match, score.token_f1, score.rouge_l,
                                            score.possible_hallucination, score.hallucination_reason,
                                            result.new_tokens, result.finish_reason)
            done += 1
        answered = [p.answers[model] for p in prompts.values()]
        report.models[model] = ModelSummary(
            loss=loss, perplexity=math.exp(loss) if loss is not None and loss < 50 else None, loss_tokens=n_tokens,
            exact_match=_mean([a.exact_match for a in answered]), token_f1=_mean([a.token_f1 for a in answered]),
            rouge_l=_mean([a.rouge_l for a in answered]),
            possible_hallucinations=sum(a.possible_hallucination for a in answered), answered=len(answered))
    report.prompts = [prompts[i] for i, _ in scorable]
    progress(total, total, "done")
    return report


# ---------------------------------------------------------------------------- the report on disk


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def summary_table(report: EvalReport) -> list[str]:
    """The markdown table of each model's aggregate scores (tuned, and base when compared), one line a row."""
    models = list(report.models)
    if not models:
        return []
    lines = ["| | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    rows = [("held-out loss", lambda s: _fmt(s.loss)), ("perplexity", lambda s: _fmt(s.perplexity, 2)),
            ("exact match", lambda s: _fmt(s.exact_match)), ("token F1", lambda s: _fmt(s.token_f1)),
            ("ROUGE-L", lambda s: _fmt(s.rouge_l)),
            ("possible hallucinations", lambda s: f"{s.possible_hallucinations} / {s.answered}")]
    for label, get in rows:
        lines.append(f"| {label} | " + " | ".join(get(report.models[m]) for m in models) + " |")
    return lines


def report_markdown(report: EvalReport) -> str:
    """The report as markdown: a summary table, then every prompt with each model's answer."""
    models = list(report.models)
    lines = [f"# Evaluation of {report.source}", "",
             f"Data: `{report.data}` ({report.examples} examples) · {report.created} · greedy decoding", ""]
    if report.objective:
        from tui_tuner.inference.objective_eval import objective_markdown

        lines += objective_markdown(report.objective)
    if not models:
        lines += [f"> {note}" for note in report.notes]
        return "\n".join(lines)
    lines += summary_table(report)
    lines.append("")
    for note in report.notes:
        lines.append(f"> {note}")
    lines.append("")
    for p in report.prompts:
        where = f" (line {p.line})" if p.line else ""
        lines += [f"## {p.index + 1}{where}", "", f"**Prompt:** {p.prompt}", "", f"**Reference:** {p.reference}", ""]
        for model, a in p.answers.items():
            flag = f" ⚠ possible hallucination: {a.hallucination_reason}" if a.possible_hallucination else ""
            lines.append(f"**{model}:** {a.answer}")
            lines.append(f"_EM {a.exact_match:.0f} · F1 {a.token_f1:.2f} · ROUGE-L {a.rouge_l:.2f}_{flag}")
            lines.append("")
    return "\n".join(lines)


def save_report(report: EvalReport, source: ModelSource) -> tuple[Path, Path]:
    """Write `<run>/eval/eval-<time>[-checkpoint-N].json` and `.md`; returns both paths."""
    folder = source.output_dir / EVAL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stem = time.strftime("eval-%Y%m%d-%H%M%S") + (f"-{source.checkpoint_name}" if source.checkpoint_name else "")
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    json_path.write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(report_markdown(report), encoding="utf-8")
    return json_path, md_path


def latest_report(run_dir: Path) -> Path | None:
    """The newest eval report (markdown) of a run, for the TUI's Eval view."""
    reports = sorted((run_dir / EVAL_DIR).glob("eval-*.md"), key=lambda p: p.stat().st_mtime)
    return reports[-1] if reports else None


def load_report(path: Path) -> EvalReport:
    """Read a saved report back (`path` is its .json, or the .md beside it). Raises OSError / ValueError."""
    data = json.loads(Path(path).with_suffix(".json").read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not an eval report")
    prompts = [PromptEval(p["index"], p.get("line"), p["prompt"], p["reference"],
                          {m: ScoredAnswer(**a) for m, a in p.get("answers", {}).items()})
               for p in data.get("prompts", [])]
    return EvalReport(data["source"], data["data"], data["examples"], data["created"], data.get("settings", {}),
                      {m: ModelSummary(**s) for m, s in data.get("models", {}).items()}, prompts,
                      list(data.get("notes", [])), dict(data.get("objective") or {}))
