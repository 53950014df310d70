"""The model card (`README.md` with the hub's YAML metadata) of a published run.

    facts = card_facts(source)                        # read from the run folder only
    text = render_card(facts, repo_id="me/garden-bot", kind="adapter", files=[...], loss_image="loss_curve.png")

Everything comes from the run directory: `config.yaml` (every hyperparameter), `status.json`
(hardware, time), `events.jsonl` (the loss curve, the data summary, GPU names) and `eval/`
(the newest report of the same checkpoint: the tuned-vs-base table). What the card leaves out
on purpose: local paths (a data file is named by its file name, never its folder), the host
name, the per-prompt answers of the eval report (they quote held-out data) and the config
sections that are not hyperparameters (`output`, `notify`, which may hold a webhook, `samples`,
the tracker settings).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from tui_tuner.inference.chat_model import ModelSource
from tui_tuner.rundir.files import CONFIG_FILE, EVAL_DIR, EVENTS_FILE, STATUS_FILE

HUB = "https://huggingface.co"
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
HF_DATASET_URL = re.compile(r"^hf://datasets/([A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)(?:@[^/]+)?(?:/.*)?$")

NOT_HYPERPARAMETERS = ("output", "notify", "samples", "report_to", "trackers", "tracking", "wandb", "mlflow",
                       "trackio", "tensorboard")
"""Top-level config keys that do not change the model: where the run was written, notifications (a
webhook may be secret), the monitoring prompts and the experiment trackers."""
SHOWN_ELSEWHERE = ("model.name_or_path", "data.train", "data.eval", "init_adapter")
"""Named in the card's own sections, without their local folders."""

OBJECTIVES = {
    "sft": "supervised fine-tuning (SFT) on conversations",
    "dpo": "Direct Preference Optimization (DPO) on chosen / rejected answer pairs",
    "orpo": "ORPO (odds-ratio preference optimization) on chosen / rejected answer pairs",
    "kto": "KTO (Kahneman-Tversky optimization) on answers labelled desirable / undesirable",
    "reward": "a reward model (a scalar head scoring answers) trained on chosen / rejected pairs",
    "grpo": "GRPO (group relative policy optimization) with reward functions",
}


@dataclass
class DatasetInfo:
    """One data file of the run: a hub dataset id, or a description of a local file."""

    role: str
    hub_id: str | None
    description: str


@dataclass
class CardFacts:
    """What the card says, gathered from the run folder."""

    run_name: str
    base_model: str
    base_hub_id: str | None
    base_builtin: bool
    base_revision: str | None
    base_licence: str | None
    base_licence_link: str | None
    licence_source: str
    method: str
    objective: str
    config: dict[str, Any]
    hyperparameters: list[tuple[str, Any]]
    datasets: list[DatasetInfo]
    train_losses: list[tuple[int, float]]
    eval_losses: list[tuple[int, float]]
    status: dict[str, Any]
    summary: dict[str, Any] | None
    gpus: list[str]
    eval_report: Any | None
    eval_report_name: str | None
    checkpoint_name: str | None
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- gathering


def hub_model_id(name: str) -> str | None:
    """`name` when it is a hub id (`org/name`, not a local folder and not a model tui-tuner builds), else None."""
    from tui_tuner.models.demo import is_builtin_model

    if not HUB_ID.match(name) or Path(name).expanduser().exists() or is_builtin_model(name):
        return None
    return name


def dataset_hub_id(value: str | None) -> str | None:
    """The hub dataset id a `data.train`/`data.eval` value names (`org/name` or `hf://datasets/org/name/...`)."""
    if not value:
        return None
    url = HF_DATASET_URL.match(value)
    if url:
        return url.group(1)
    if Path(value).expanduser().exists():  # a local path that exists wins, as when training
        return None
    return value if HUB_ID.match(value) else None


def hyperparameters(raw: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every setting of `config.yaml` that shapes the model, as (dotted key, value), in file order."""
    out: list[tuple[str, Any]] = []
    for key, value in raw.items():
        if key in NOT_HYPERPARAMETERS:
            continue
        if isinstance(value, dict):
            for sub_key, sub in value.items():
                dotted = f"{key}.{sub_key}"
                if dotted not in SHOWN_ELSEWHERE:
                    out.append((dotted, sub))
        elif key not in SHOWN_ELSEWHERE:
            out.append((key, value))
    return out


def _front_matter(text: str) -> dict[str, Any]:
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    if end < 0:
        return {}
    try:
        data = yaml.safe_load(text[3:end])
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def base_licence(name: str, resolved: str) -> tuple[str | None, str | None, str]:
    """(licence id, licence link, where it was read) of the base model; the id is None when unknown.

    Read from the base model's own card (`README.md` front matter: `license`, `license_name`,
    `license_link`), in its local folder or in the huggingface_hub cache; never downloaded.
    """
    folder = Path(resolved).expanduser()
    readme: Path | None = folder / "README.md" if (folder / "README.md").is_file() else None
    where = f"the base model's README.md ({name})"
    if readme is None and hub_model_id(name):
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name, "README.md")
        except Exception:  # noqa: BLE001 - an unreadable cache means unknown, not a failure
            cached = None
        if isinstance(cached, str):
            readme = Path(cached)
    if readme is not None:
        try:
            meta = _front_matter(readme.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            meta = {}
        licence = meta.get("license")
        if isinstance(licence, list):
            licence = licence[0] if licence else None
        if licence:
            licence = str(licence)
            if licence == "other" and meta.get("license_name"):
                licence = f"other ({meta['license_name']})"
            link = meta.get("license_link")
            return licence, str(link) if link else None, where
        return None, None, f"{where} names no licence"
    if folder.is_dir():
        for candidate in ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE"):
            if (folder / candidate).is_file():
                return None, None, f"the base model's folder has a {candidate} file but no card naming the licence"
        return None, None, "the base model's folder has no README.md or LICENSE file"
    return None, None, "the base model's card is not on this machine (the hub was not asked)"


def _eval_report(run_dir: Path, checkpoint_name: str | None):
    """The newest eval report (loaded) of the published weights: the final adapter, or that checkpoint."""
    from tui_tuner.inference.evaluate import load_report

    reports = sorted((run_dir / EVAL_DIR).glob("eval-*.json"), key=lambda p: p.stat().st_mtime)
    for path in reversed(reports):
        stem_checkpoint = re.search(r"-(checkpoint-\d+)$", path.stem)
        if (stem_checkpoint.group(1) if stem_checkpoint else None) != checkpoint_name:
            continue
        try:
            return load_report(path), path.name
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None, None


def _data_info(role: str, value: str | None, data_event: dict[str, Any] | None,
               selection: list[str] | None = None) -> DatasetInfo | None:
    if not value:
        return None
    hub = dataset_hub_id(value)
    counts = list(selection or []) if hub else []
    if data_event:
        fmt = data_event.get("format")
        n = data_event.get("train_examples" if role == "train" else "eval_examples")
        if fmt:
            counts.append(f"{fmt} format")
        if isinstance(n, int):
            counts.append(f"{n:,} {'training' if role == 'train' else 'evaluation'} examples")
        tokens = data_event.get("train_tokens")
        if role == "train" and isinstance(tokens, int):
            counts.append(f"{tokens:,} tokens")
    detail = f" ({', '.join(counts)})" if counts else ""
    if hub:
        return DatasetInfo(role, hub, f"[{hub}]({HUB}/datasets/{hub}){detail}")
    return DatasetInfo(role, None, f"a local file, `{Path(value).name}`{detail}; not published with the model")


def card_facts(source: ModelSource) -> CardFacts:
    """Read everything the card says from the run folder of `source` (no model is loaded)."""
    from tui_tuner.rundir.events import load_history
    from tui_tuner.models.demo import is_builtin_model

    if source.run_dir is None or source.config is None:
        raise ValueError(f"{source.label} is not part of a run folder; a model card is written from a run's "
                         "config, events and status.")
    run_dir = source.run_dir
    cfg = source.config
    try:
        raw = yaml.safe_load((run_dir / CONFIG_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        raw = cfg.model_dump(mode="json")
    try:
        status = json.loads((run_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        status = {}
    history = load_history(run_dir / EVENTS_FILE)
    data_events = [e for e in history.other if e.get("kind") == "data"]
    data_event = data_events[-1] if data_events else None
    name = cfg.model.name_or_path
    licence, link, where = base_licence(name, source.base_model)
    subset = getattr(cfg.data, "subset", None)
    picked = {role: ([f"subset `{subset}`"] if subset else [])
              + ([f"split `{split}`"] if (split := getattr(cfg.data, key, None)) else [])
              for role, key in (("train", "split"), ("eval", "eval_dataset_split"))}
    datasets = [d for d in (_data_info("train", cfg.data.train, data_event, picked["train"]),
                            _data_info("eval", cfg.data.eval, data_event, picked["eval"])) if d]
    step_limit = None
    if source.checkpoint_name:
        step_limit = int(source.checkpoint_name.rsplit("-", 1)[-1])
    losses = [(s, v) for s, v in history.losses if step_limit is None or s <= step_limit]
    evals = [(int(e["step"]), float(e["eval_loss"])) for e in history.evals
             if isinstance(e.get("eval_loss"), (int, float)) and "step" in e
             and (step_limit is None or e["step"] <= step_limit)]
    gpus = []
    seen: set[int] = set()
    for sample in history.gpu:
        if sample.get("index") not in seen and sample.get("name"):
            seen.add(sample.get("index"))
            gpus.append(str(sample["name"]))
    report, report_name = _eval_report(run_dir, source.checkpoint_name)
    return CardFacts(
        run_name=run_dir.name, base_model=name, base_hub_id=hub_model_id(name), base_builtin=is_builtin_model(name),
        base_revision=cfg.model.revision, base_licence=licence, base_licence_link=link, licence_source=where,
        method=cfg.method, objective=cfg.objective, config=raw, hyperparameters=hyperparameters(raw),
        datasets=datasets, train_losses=losses, eval_losses=evals, status=status, summary=history.summary,
        gpus=gpus, eval_report=report, eval_report_name=report_name, checkpoint_name=source.checkpoint_name)


# ---------------------------------------------------------------------------- rendering


def _cell(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, float) and not value.is_integer():
        text = f"{value:g}"
    else:
        text = json.dumps(value, ensure_ascii=False)
    text = text.replace("|", "\\|").replace("\n", " ")
    return f"`{text}`" if text else "`\"\"`"


def _loss(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else str(value)


def _duration(seconds: float | None) -> str | None:
    from tui_tuner.core.units import format_duration

    return format_duration(seconds) if isinstance(seconds, (int, float)) and seconds >= 0 else None


def _memory(value: Any) -> str | None:
    from tui_tuner.core.units import format_bytes

    return format_bytes(value) if isinstance(value, (int, float)) and value > 0 else None


def metadata(facts: CardFacts, kind: str) -> dict[str, Any]:
    """The card's YAML front matter (the hub reads it for search, the licence badge and the model tree)."""
    meta: dict[str, Any] = {}
    if facts.base_hub_id:
        meta["base_model"] = facts.base_hub_id
    meta["library_name"] = {"adapter": "peft" if facts.method != "full" else "transformers",
                            "merged": "transformers", "gguf": "gguf"}[kind]
    meta["license"] = facts.base_licence if facts.base_licence and " " not in facts.base_licence else (
        "other" if facts.base_licence else "unknown")
    named = re.match(r"^other \((.+)\)$", facts.base_licence or "")
    if named:  # the hub shows a custom licence by its name and link
        meta["license_name"] = named.group(1)
    if facts.base_licence_link and meta["license"] == "other":
        meta["license_link"] = facts.base_licence_link
    hub_datasets = [d.hub_id for d in facts.datasets if d.hub_id]
    if hub_datasets:
        meta["datasets"] = list(dict.fromkeys(hub_datasets))
    meta["pipeline_tag"] = "text-generation"
    method_tag = {"lora": "lora", "qlora": "qlora", "full": "full-fine-tune"}.get(facts.method, facts.method)
    meta["tags"] = ["tui-tuner", method_tag, facts.objective] + (["gguf"] if kind == "gguf" else [])
    return meta


def _method_text(facts: CardFacts) -> str:
    lora = facts.config.get("lora") or {}
    quant = facts.config.get("quantization") or {}
    if facts.method == "full":
        return "full fine-tuning (every weight of the base model was trained)"
    adapter = (f"LoRA (rank {lora.get('r')}, alpha {lora.get('alpha')}, dropout {lora.get('dropout')}, "
               f"target modules {lora.get('target_modules')}{', rsLoRA' if lora.get('use_rslora') else ''})")
    if facts.method == "qlora":
        return (f"QLoRA: {adapter} on the base model quantized to 4 bits ({quant.get('quant_type', 'nf4')}"
                f"{', double quantization' if quant.get('double_quant') else ''}, compute dtype "
                f"{quant.get('compute_dtype', 'auto')})")
    return adapter


def _objective_text(facts: CardFacts) -> str:
    text = OBJECTIVES.get(facts.objective, facts.objective)
    data = facts.config.get("data") or {}
    if facts.objective == "sft":
        text += ("; the loss counts the assistant's answers only" if data.get("completion_only_loss", True)
                 else "; the loss counts every token")
    if facts.objective == "grpo":
        rewards = (facts.config.get("grpo") or {}).get("rewards") or []
        names = [r if isinstance(r, str) else (r or {}).get("function", "?") for r in rewards]
        if names:
            text += f" ({', '.join(names)})"
    return text


def _base_text(facts: CardFacts) -> str:
    if facts.base_hub_id:
        revision = f" (revision `{facts.base_revision}`)" if facts.base_revision else ""
        return f"[{facts.base_hub_id}]({HUB}/{facts.base_hub_id}){revision}"
    if facts.base_builtin:
        return (f"`{facts.base_model}`, a small model tui-tuner builds locally for demos and tests "
                "(not on the Hugging Face Hub)")
    return f"a local model folder, `{Path(facts.base_model).name}` (not a Hugging Face Hub id)"


def _licence_text(facts: CardFacts) -> str:
    if facts.base_licence:
        link = f" ([licence text]({facts.base_licence_link}))" if facts.base_licence_link else ""
        return (f"The base model is licensed `{facts.base_licence}`{link} (from {facts.licence_source}); "
                "this fine-tune follows the base model's licence and terms of use.")
    return (f"The base model's licence is **unknown** here: {facts.licence_source}. Check it before using or "
            "sharing this model: a fine-tune follows its base model's licence.")


def _results(facts: CardFacts, loss_image: str | None) -> list[str]:
    lines = ["## Training results", ""]
    st = facts.status
    rows = []
    if st.get("step") is not None:
        step = facts.checkpoint_name or f"{st.get('step')} / {st.get('max_steps') or '?'}"
        rows.append(("steps", step))
    if isinstance(st.get("epoch"), (int, float)):
        rows.append(("epochs", f"{st['epoch']:.2f}"))
    if facts.train_losses:
        final_step, final = facts.train_losses[-1]
        best_step, best = min(facts.train_losses, key=lambda p: (p[1] if math.isfinite(p[1]) else math.inf))
        rows.append(("final training loss", f"{_loss(final)} (step {final_step})"))
        rows.append(("best training loss", f"{_loss(best)} (step {best_step})"))
    if facts.summary and isinstance(facts.summary.get("train_loss"), (int, float)) and not facts.checkpoint_name:
        rows.append(("mean training loss (whole run)", _loss(float(facts.summary["train_loss"]))))
    if facts.eval_losses:
        final_step, final = facts.eval_losses[-1]
        best_step, best = min(facts.eval_losses, key=lambda p: p[1])
        rows.append(("final eval loss", f"{_loss(final)} (step {final_step})"))
        rows.append(("best eval loss", f"{_loss(best)} (step {best_step})"))
    if not rows:
        lines.append("The run logged no loss.")
    else:
        lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    if loss_image:
        lines += ["", f"![Loss curve: training loss by step{' and eval loss' if facts.eval_losses else ''}]"
                      f"({loss_image})"]
    return lines + [""]


def _evaluation(facts: CardFacts, run_label: str) -> list[str]:
    lines = ["## Evaluation", ""]
    report = facts.eval_report
    if report is None:
        return lines + [f"No evaluation report was saved for these weights. `tui-tuner eval {run_label} "
                        "--compare-base` scores the tuned model against the base on held-out data.", ""]
    from tui_tuner.inference.evaluate import summary_table

    models = list(report.models) or list((report.objective or {}).get("models") or [])
    compared = " vs ".join(models) if models else "the tuned model"
    lines.append(f"`tui-tuner eval` on {Path(str(report.data)).name} ({report.examples} examples, greedy decoding, "
                 f"{report.created}): {compared}. Loss and perplexity are on the answer tokens; exact match, "
                 "token F1 and ROUGE-L compare each generated answer with the reference.")
    lines.append("")
    if report.objective:
        from tui_tuner.inference.objective_eval import objective_markdown

        lines += [line.replace("## ", "### ", 1) if line.startswith("## ") else line
                  for line in objective_markdown(report.objective)]
    lines += summary_table(report)
    return lines + [""]


def _hardware(facts: CardFacts) -> list[str]:
    st = facts.status
    rows = []
    device = st.get("device")
    if facts.gpus:
        counted: dict[str, int] = {}
        for g in facts.gpus:
            counted[g] = counted.get(g, 0) + 1
        rows.append(("hardware", ", ".join(f"{n} × {g}" for g, n in counted.items())))
    elif device:
        rows.append(("hardware", {"cpu": "CPU only", "mps": "Apple Silicon GPU (MPS)"}.get(device, str(device))))
    for key, label in (("precision", "precision"), ("backend", "training backend")):
        if st.get(key):
            rows.append((label, str(st[key])))
    peak = _memory(st.get("peak_memory_bytes")) or _memory((st.get("probe") or {}).get("measured_peak_bytes"))
    if peak:
        rows.append(("peak memory", peak))
    wall = _duration(st["ended"] - st["started"]) if isinstance(st.get("ended"), (int, float)) and isinstance(
        st.get("started"), (int, float)) else None
    if wall:
        rows.append(("wall time (start to end)", wall))
    runtime = _duration((facts.summary or {}).get("train_runtime"))
    if runtime:
        rows.append(("training loop time", runtime))
    if isinstance(st.get("attempts"), int) and st["attempts"] > 1:
        rows.append(("attempts", f"{st['attempts']} (resumed from checkpoints)"))
    if isinstance(st.get("ended"), (int, float)):
        rows.append(("finished", datetime.fromtimestamp(st["ended"], timezone.utc).strftime("%Y-%m-%d %H:%M UTC")))
    if not rows:
        return []
    return ["## Hardware and time", "", "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows] + [""]


def _usage(facts: CardFacts, repo_id: str, kind: str, files: list[str]) -> list[str]:
    lines = ["## How to use it", ""]
    ggufs = [f for f in files if f.endswith(".gguf")]
    modelfiles = [f for f in files if f.endswith(".Modelfile") or f == "Modelfile"]
    base = facts.base_hub_id or "BASE_MODEL"
    chat = ['messages = [{"role": "user", "content": "Hello!"}]',
            'inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", '
            'return_dict=True).to(model.device)',
            "output = model.generate(**inputs, max_new_tokens=128)",
            'print(tokenizer.decode(output[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True))']
    if kind == "adapter" and facts.method != "full":
        lines += ["This repository holds a PEFT LoRA adapter; the base model is loaded from "
                  f"`{base}` and the adapter applied on it. The tokenizer here carries the chat template "
                  "used in training.", "",
                  "**transformers + PEFT**", "", "```python",
                  "from peft import AutoPeftModelForCausalLM", "from transformers import AutoTokenizer", "",
                  f'model = AutoPeftModelForCausalLM.from_pretrained("{repo_id}", device_map="auto")',
                  f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")', *chat, "```", "",
                  "Or explicitly, with the base model loaded first (e.g. in 4-bit with `BitsAndBytesConfig`"
                  + (", as in training" if facts.method == "qlora" else "") + "):", "", "```python",
                  "from peft import PeftModel", "from transformers import AutoModelForCausalLM", "",
                  f'base = AutoModelForCausalLM.from_pretrained("{base}", device_map="auto")',
                  f'model = PeftModel.from_pretrained(base, "{repo_id}")',
                  "model = model.merge_and_unload()  # optional: one plain model, faster to run", "```", "",
                  "**llama.cpp / Ollama**: they read GGUF files. Convert the adapter with llama.cpp's "
                  "`convert_lora_to_gguf.py --base BASE_MODEL_FOLDER ADAPTER_FOLDER` and run it on a GGUF of the "
                  "base (`llama-cli -m base.gguf --lora adapter.gguf`, or `ADAPTER ./adapter.gguf` in an Ollama "
                  "Modelfile), or publish a merged GGUF of this run: `tui-tuner publish RUN --gguf q4_k_m`.", ""]
    elif kind in ("adapter", "merged"):
        what = "the adapter merged into the base weights" if kind == "merged" else "fully fine-tuned weights"
        lines += [f"This repository holds a complete transformers model ({what}, safetensors) and its tokenizer "
                  "with the chat template used in training.", "",
                  "**transformers**", "", "```python",
                  "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  f'model = AutoModelForCausalLM.from_pretrained("{repo_id}", device_map="auto")',
                  f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")', *chat, "```", "",
                  f"**llama.cpp / Ollama**: convert a clone with llama.cpp's `convert_hf_to_gguf.py {repo_id.split('/')[-1]}` "
                  "(or publish a GGUF of the run: `tui-tuner publish RUN --gguf q4_k_m`).", ""]
    else:
        preference = ("q4_k_m", "q5_k_m", "q6_k", "q8_0", "bf16", "f16")  # the smallest first: what most people run
        ggufs = sorted(ggufs, key=lambda f: next((n for n, q in enumerate(preference) if f.lower().endswith(f"-{q}.gguf")),
                                                 len(preference)))
        quant = ggufs[0].rsplit("-", 1)[-1].removesuffix(".gguf").upper() if ggufs else "Q8_0"
        lines += ["This repository holds GGUF files for llama.cpp and Ollama, each with the chat template in its "
                  "metadata" + (" and an Ollama Modelfile beside it" if modelfiles else "") + ":", ""]
        lines += [f"- `{f}`" for f in ggufs] + [""]
        lines += ["**llama.cpp**", "", "```sh", f"llama-cli -hf {repo_id}:{quant} -cnv", "```", "",
                  "**Ollama**", "", "```sh", f"ollama run hf.co/{repo_id}:{quant}", "```", ""]
        modelfiles = [m for m in modelfiles if ggufs and m.rsplit(".", 1)[0] == ggufs[0].rsplit(".", 1)[0]] or modelfiles
        if modelfiles and ggufs:
            lines += ["Or with the Modelfile (it carries the stop tokens and template tui-tuner checked):", "",
                      "```sh", f"hf download {repo_id} {ggufs[0]} {modelfiles[0]} --local-dir model",
                      f"cd model && ollama create {repo_id.split('/')[-1].lower()} -f {modelfiles[0]}", "```", ""]
        if ggufs:
            lines += ["**transformers** (dequantizes the GGUF; needs the `gguf` package)", "", "```python",
                      "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                      f'model = AutoModelForCausalLM.from_pretrained("{repo_id}", gguf_file="{ggufs[0]}")',
                      f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}", gguf_file="{ggufs[0]}")', "```", ""]
    return lines


def render_card(facts: CardFacts, *, repo_id: str, kind: str, files: list[str], loss_image: str | None,
                run_label: str | None = None, notes: list[str] | None = None, checks: list[str] | None = None) -> str:
    """The whole `README.md`: YAML metadata, then the model, its data, every hyperparameter, results,
    evaluation, hardware and time, how to use it and the licence."""
    meta = yaml.safe_dump(metadata(facts, kind), sort_keys=False, allow_unicode=True).strip()
    title = repo_id.split("/")[-1]
    what = {"adapter": "a LoRA adapter" if facts.method != "full" else "a fine-tuned model",
            "merged": "a fine-tuned model (adapter merged into the base)", "gguf": "GGUF files of a fine-tuned model"}[kind]
    lines = [f"---\n{meta}\n---", "", f"# {title}", "",
             f"{what[0].upper() + what[1:]} of {_base_text(facts)}, fine-tuned with "
             f"tui-tuner (run `{facts.run_name}`"
             + (f", {facts.checkpoint_name}" if facts.checkpoint_name else "") + ").", "",
             "## Training", "",
             f"- **Base model**: {_base_text(facts)}",
             f"- **Method**: {_method_text(facts)}",
             f"- **Objective**: {_objective_text(facts)}"]
    for d in facts.datasets:
        lines.append(f"- **{'Training' if d.role == 'train' else 'Evaluation'} data**: {d.description}")
    data = facts.config.get("data") or {}
    if isinstance(data.get("eval_split"), (int, float)) and data["eval_split"] > 0 and not data.get("eval"):
        lines.append(f"- **Evaluation data**: {data['eval_split']:.0%} of the training data, held out")
    lines += ["", "### Hyperparameters", "",
              "Every setting of the run's `config.yaml` that shapes the model:", "",
              "| hyperparameter | value |", "|---|---|"]
    lines += [f"| `{k}` | {_cell(v)} |" for k, v in facts.hyperparameters]
    lines.append("")
    lines += _results(facts, loss_image)
    lines += _evaluation(facts, run_label or facts.run_name)
    lines += _hardware(facts)
    lines += _usage(facts, repo_id, kind, files)
    if checks:
        lines += ["### Checked before publishing", ""] + [f"- {c}" for c in checks] + [""]
    lines += ["## Licence", "", _licence_text(facts), ""]
    for note in notes or []:
        lines.append(f"> {note}")
    return "\n".join(lines).rstrip() + "\n"
