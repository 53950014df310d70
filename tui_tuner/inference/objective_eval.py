"""Evaluation for the objectives beyond SFT, in the same report as SFT's eval.

    tui-tuner eval dpo-run --compare-base          # preference accuracy, tuned vs base
    tui-tuner eval grpo-run --compare-base         # mean reward on held-out prompts, tuned vs base

- dpo / orpo / kto: preference accuracy on held-out pairs: does the model give the chosen answer a
  higher log-probability (summed over its tokens, after the prompt) than the rejected one? For
  KTO data, pairs are not needed: the mean log-probability margin of desirable over undesirable answers.
- grpo: each held-out prompt answered greedily, scored by the run's own reward functions; mean reward.
- reward: the reward model's accuracy at scoring chosen above rejected (no base to compare: an untrained
  head scores at random).

The base model is the same weights with the adapter switched off. Prompts and answers are
rendered through the run's chat template, as in training.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from tui_tuner.config.schema import project_dir_for
from tui_tuner.data.preference import ObjectiveExample, load_objective_file
from tui_tuner.inference.chat_model import ChatModel, GenerationSettings, ModelSource, SourceError
from tui_tuner.rundir.files import CONFIG_FILE

DEFAULT_LIMIT = 64
"""Held-out examples scored when no --limit is given (each costs a forward pass or a generation per model)."""


def objective_examples(source: ModelSource, data: str | Path | None) -> tuple[list[ObjectiveExample], str]:
    """Held-out examples for the run's objective: `data`, else the run's data.eval, else its eval split."""
    cfg = source.config
    assert cfg is not None
    base = project_dir_for(source.run_dir / CONFIG_FILE) if source.run_dir else Path.cwd()
    path = Path(data) if data is not None else (cfg.resolve_path(cfg.data.eval, base) if cfg.data.eval else None)
    split = None
    if path is None:
        if cfg.data.eval_split <= 0:
            raise SourceError(f"no held-out data for this {cfg.objective} run: it has no data.eval or "
                              "data.eval_split. Pass --data FILE (the same format as its training file).")
        path, split = cfg.resolve_path(cfg.data.train, base), cfg.data.eval_split
    if not Path(path).is_file():
        raise SourceError(f"{path}: file not found.")
    loaded = load_objective_file(path, cfg.objective, cfg.data.model_copy(update={"max_samples": None}))
    errors = [i for i in loaded.issues if i.severity == "error"]
    if errors or not loaded.examples:
        detail = errors[0].format() if errors else "no usable example"
        raise SourceError(f"{path} cannot be evaluated on: {detail}. `tui-tuner data check {path} --config "
                          f"{source.run_dir / CONFIG_FILE if source.run_dir else 'CONFIG'}` lists every problem.")
    examples = loaded.examples
    if split:
        from tui_tuner.inference.evaluate import split_heldout

        examples = split_heldout(examples, split, cfg.training.seed)
        return examples, f"{path} (the {split:.0%} held out in training)"
    return examples, str(path)


ITEM_TEXT_CHARS = 500
"""Prompts and answers are kept in the report up to this length (enough to recognise them)."""


def prompt_line(messages: list[dict[str, str]]) -> str:
    """The prompt's last user turn, as the report's per-example rows show it."""
    users = [m["content"] for m in messages if m.get("role") == "user"]
    return (users[-1] if users else "\n".join(m["content"] for m in messages))[:ITEM_TEXT_CHARS]


def answer_text(messages: list[dict[str, str]] | None) -> str:
    """An answer's assistant text (the side of a pair, or a KTO completion)."""
    return "\n".join(m["content"] for m in messages or [] if m.get("role") == "assistant")[:ITEM_TEXT_CHARS]


def answer_logprob(chat: ChatModel, prompt: list[dict[str, str]], answer: list[dict[str, str]]) -> tuple[float, int]:
    """(sum of log-probabilities of the answer's tokens after the prompt, token count) under the current adapter state."""
    import torch

    prompt_ids = chat.encode(chat.render(prompt, add_generation_prompt=True))
    full_ids = chat.encode(chat.render(prompt + answer, add_generation_prompt=False))
    n_prompt = len(prompt_ids) if full_ids[: len(prompt_ids)] == prompt_ids else 0
    full_ids = full_ids[: chat.context_length]
    if len(full_ids) <= max(n_prompt, 1):
        return 0.0, 0
    ids = torch.tensor([full_ids], device=chat.device)
    logits = chat.model(input_ids=ids).logits[0, :-1].float()
    logps = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0]
    start = max(n_prompt - 1, 0)  # logits at t predict token t+1
    return float(logps[start:].sum()), len(full_ids) - max(n_prompt, 1)


def preference_scores(chat: ChatModel, examples: list[ObjectiveExample], use_adapter: bool,
                      progress: Callable[[str], None]) -> dict[str, Any]:
    """Preference accuracy and mean margin (chosen minus rejected log-probability) over pairs."""
    import torch

    wins, margins, items = 0, [], []
    with chat._lock, chat.adapter(use_adapter), torch.inference_mode():
        for i, ex in enumerate(examples):
            progress(f"pair {i + 1}/{len(examples)}")
            chosen, _ = answer_logprob(chat, ex.prompt, ex.chosen or [])
            rejected, _ = answer_logprob(chat, ex.prompt, ex.rejected or [])
            margin = chosen - rejected
            wins += margin > 0
            margins.append(margin)
            items.append({"line": ex.line, "prompt": prompt_line(ex.prompt), "chosen": answer_text(ex.chosen),
                          "rejected": answer_text(ex.rejected), "chosen_logp": round(chosen, 3),
                          "rejected_logp": round(rejected, 3), "margin": round(margin, 3)})
    n = len(examples)
    return {"preference_accuracy": wins / n if n else None, "mean_margin": sum(margins) / n if n else None,
            "pairs": n, "items": items}


def kto_scores(chat: ChatModel, examples: list[ObjectiveExample], use_adapter: bool,
               progress: Callable[[str], None]) -> dict[str, Any]:
    """Mean per-token log-probability of desirable minus undesirable answers (higher is better)."""
    import torch

    good, bad, items = [], [], []
    with chat._lock, chat.adapter(use_adapter), torch.inference_mode():
        for i, ex in enumerate(examples):
            progress(f"answer {i + 1}/{len(examples)}")
            logp, n = answer_logprob(chat, ex.prompt, ex.completion or [])
            per_token = logp / max(n, 1)
            (good if ex.label else bad).append(per_token)
            items.append({"line": ex.line, "prompt": prompt_line(ex.prompt), "completion": answer_text(ex.completion),
                          "label": "desirable" if ex.label else "undesirable", "logp_per_token": round(per_token, 3)})
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    g, b = mean(good), mean(bad)
    return {"desirable_logp": g, "undesirable_logp": b,
            "desirability_margin": (g - b) if g is not None and b is not None else None,
            "desirable": len(good), "undesirable": len(bad), "items": items}


def reward_scores(chat: ChatModel, examples: list[ObjectiveExample], use_adapter: bool,
                  settings: GenerationSettings, progress: Callable[[str], None]) -> dict[str, Any]:
    """Mean weighted reward of greedy answers, per reward function and in total."""
    from tui_tuner.data.rewards import resolve_rewards

    cfg = chat.source.config
    rewards = resolve_rewards(cfg.grpo.rewards, None)  # the run's config holds absolute file paths
    totals: list[float] = []
    per: dict[str, list[float]] = {r.name: [] for r in rewards}
    items = []
    for i, ex in enumerate(examples):
        progress(f"prompt {i + 1}/{len(examples)}")
        result = chat.answer(ex.prompt, settings, use_adapter=use_adapter)
        if result.error:
            raise RuntimeError(f"generation failed on line {ex.line}: {result.error}")
        completion = [[{"role": "assistant", "content": result.text}]]
        columns = {k: [v] for k, v in ex.extra.items()}
        scores = {}
        for r in rewards:
            try:
                value = r.function(prompts=[ex.prompt], completions=completion, **columns)[0]
            except Exception as exc:  # noqa: BLE001 - a user's reward function: report which and where
                raise RuntimeError(f"reward function `{r.name}` raised {type(exc).__name__}: {exc} "
                                   f"(line {ex.line})") from exc
            scores[r.name] = value
            if isinstance(value, (int, float)):
                per[r.name].append(float(value))
        total = sum(r.weight * scores[r.name] for r in rewards if isinstance(scores[r.name], (int, float)))
        totals.append(total)
        items.append({"line": ex.line, "prompt": prompt_line(ex.prompt), "answer": result.text[:500], "rewards": scores,
                      "total": round(total, 4)})
    return {"mean_reward": sum(totals) / len(totals) if totals else None,
            **{f"rewards/{k}": (sum(v) / len(v) if v else None) for k, v in per.items()},
            "prompts": len(examples), "items": items}


def reward_model_scores(source: ModelSource, examples: list[ObjectiveExample],
                        progress: Callable[[str], None]) -> dict[str, Any]:
    """A trained reward model's accuracy at scoring chosen above rejected, and its mean margin."""
    from tui_tuner.core.quiet import quiet_library_noise

    quiet_library_noise()
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from tui_tuner.inference.chat_model import load_tokenizer_and_template

    tokenizer, template = load_tokenizer_and_template(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(source.base_model, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    if source.adapter_dir is not None:
        model = PeftModel.from_pretrained(model, str(source.adapter_dir))
    model.eval()
    from tui_tuner.chat_format.templates import render_conversation

    def score(messages: list[dict[str, str]]) -> float:
        text = render_conversation(tokenizer, messages, chat_template=template)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
        return float(model(**ids).logits[0, 0])

    wins, margins, items = 0, [], []
    with torch.inference_mode():
        for i, ex in enumerate(examples):
            progress(f"pair {i + 1}/{len(examples)}")
            chosen, rejected = score(ex.prompt + (ex.chosen or [])), score(ex.prompt + (ex.rejected or []))
            margin = chosen - rejected
            wins += margin > 0
            margins.append(margin)
            items.append({"line": ex.line, "prompt": prompt_line(ex.prompt), "chosen": answer_text(ex.chosen),
                          "rejected": answer_text(ex.rejected), "chosen_score": round(chosen, 3),
                          "rejected_score": round(rejected, 3), "margin": round(margin, 3)})
    n = len(examples)
    return {"reward_accuracy": wins / n if n else None, "mean_margin": sum(margins) / n if n else None, "pairs": n,
            "items": items}


HEADLINE = {"dpo": "preference_accuracy", "orpo": "preference_accuracy", "kto": "desirability_margin",
            "grpo": "mean_reward", "reward": "reward_accuracy"}
"""The number each objective's report leads with."""


def evaluate_objective(source: ModelSource, examples: list[ObjectiveExample], data_label: str, *,
                       chat: ChatModel | None, compare_base: bool, settings: GenerationSettings,
                       progress: Callable[[int, int, str], None] = lambda d, t, w: None) -> Any:
    """An `EvalReport` whose `objective` section holds the tuned (and base) scores for the run's objective."""
    from dataclasses import asdict

    from tui_tuner.inference.evaluate import EvalReport

    cfg = source.config
    objective = cfg.objective
    models = ["tuned", "base"] if compare_base and objective != "reward" else ["tuned"]
    report = EvalReport(source.label, data_label, len(examples), time.strftime("%Y-%m-%dT%H:%M:%S"),
                        {k: v for k, v in asdict(settings).items() if v is not None},
                        notes=list(chat.notes) if chat else [])
    section: dict[str, Any] = {"objective": objective, "headline": HEADLINE[objective], "models": {}}
    for k, model in enumerate(models):
        use_adapter = model == "tuned"

        def step(what: str, k=k, model=model) -> None:
            progress(k, len(models), f"{model}: {what}")

        if objective in ("dpo", "orpo"):
            section["models"][model] = preference_scores(chat, examples, use_adapter, step)
        elif objective == "kto":
            section["models"][model] = kto_scores(chat, examples, use_adapter, step)
        elif objective == "grpo":
            section["models"][model] = reward_scores(chat, examples, use_adapter, settings, step)
        else:
            section["models"][model] = reward_model_scores(source, examples, step)
    if compare_base and objective == "reward":
        report.notes.append("a reward model has no base to compare with: the untrained score head is random")
    report.objective = section
    progress(len(models), len(models), "done")
    return report


MEANING = {
    "dpo": "the share of held-out pairs where the model finds the chosen answer likelier than the rejected one "
           "(0.5 = chance)",
    "kto": "desirable answers' mean log-probability per token minus undesirable ones' (above 0: prefers desirable)",
    "grpo": "the run's weighted reward functions on greedy answers to held-out prompts, averaged",
    "reward": "the share of held-out pairs the reward model scores chosen above rejected (0.5 = chance)",
}
MEANING["orpo"] = MEANING["dpo"]
"""One line per objective: what its headline number means."""

EXAMPLE_COLUMNS = {
    "dpo": (("margin", "margin"),),
    "kto": (("logp_per_token", "logp/tok"),),
    "grpo": (("total", "reward"),),
    "reward": (("margin", "margin"),),
}
EXAMPLE_COLUMNS["orpo"] = EXAMPLE_COLUMNS["dpo"]
"""Per-example table columns of each objective's items, (item key, label), one set per model: the margin is
chosen minus rejected (log-probability, or reward-model score); each side's value is in the item."""


def format_value(value: Any, digits: int = 3) -> str:
    """A score as the report prints it: `–` when missing, floats to `digits` places."""
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def headline_line(section: dict[str, Any]) -> str:
    """`preference accuracy: <what it means>` for the section's objective."""
    return f"{section['headline'].replace('_', ' ')}: {MEANING.get(section['objective'], '')}".rstrip(": ")


def summary_rows(section: dict[str, Any]) -> tuple[list[str], list[tuple[str, str, list[str]]]]:
    """(models, rows): one row per aggregate score, as (key, label, one formatted cell per model)."""
    models = list(section.get("models") or {})
    if not models:
        return [], []
    keys = [k for k, v in section["models"][models[0]].items() if isinstance(v, (int, float)) or v is None]
    return models, [(k, k.replace("_", " "), [format_value(section["models"][m].get(k)) for m in models])
                    for k in keys]


def example_table(section: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(labels, rows) of the per-example table: line, prompt, (KTO: label), then each model's scores.

    Empty when the report holds no per-example items (reports written before they were saved)."""
    models = list(section.get("models") or {})
    items = {m: section["models"][m].get("items") or [] for m in models}
    if not models or not items[models[0]]:
        return [], []
    objective = section["objective"]
    columns = EXAMPLE_COLUMNS.get(objective, ())
    labels = ["line", "prompt"] + (["label"] if objective == "kto" else [])
    for model in models:
        labels += [f"{model} {label}" if i == 0 else label for i, (_, label) in enumerate(columns)]
    rows = []
    for i, first in enumerate(items[models[0]]):
        row = [format_value(first.get("line")), " ".join(str(first.get("prompt", "")).split())]
        if objective == "kto":
            row.append(str(first.get("label", "")))
        for model in models:
            item = items[model][i] if i < len(items[model]) else {}
            row += [format_value(item.get(key), 2) for key, _ in columns]
        rows.append(row)
    return labels, rows


def objective_markdown(section: dict[str, Any]) -> list[str]:
    """The objective's part of the markdown report: what the number means, the scores, then every example."""
    models, rows = summary_rows(section)
    lines = [f"## {section['objective']}: {section['headline'].replace('_', ' ')}", "",
             f"_{headline_line(section)}_", "",
             "| | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for _, label, cells in rows]
    lines.append("")
    labels, examples = example_table(section)
    if examples:
        lines += ["| " + " | ".join(labels) + " |", "|" + "---|" * len(labels)]
        for row in examples:
            cells = [c.replace("|", "\\|") for c in row]
            cells[1] = cells[1][:60] + ("…" if len(cells[1]) > 60 else "")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines
