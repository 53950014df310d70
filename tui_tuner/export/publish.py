"""Publish a run to the Hugging Face Hub: a folder with the weights and a model card, then one upload.

    folder = build_publish_folder(source, out, repo_id="me/garden-bot", kind="adapter")
    url = upload(folder.path, "me/garden-bot", private=True)

`kind` says what goes up: `adapter` (the PEFT adapter, or a full run's weights, with the
tokenizer and its chat template), `merged` (the adapter merged into the base, by
`export_merged`) or `gguf` (one GGUF + Ollama Modelfile per quantization, by `export_gguf`).
Every folder gets `README.md` (`tui_tuner.export.model_card`) and `loss_curve.png`. The folder is
exactly what is uploaded: `--dry-run` stops after writing it.

The token is huggingface_hub's own (`hf auth login`, or HF_TOKEN): tui-tuner asks huggingface_hub
whether there is one, and never prints it, writes it or passes it anywhere else; error
messages from the hub are scrubbed of it before they are shown.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tui_tuner.inference.chat_model import ModelSource, SourceError
from tui_tuner.rundir.files import PUBLISH_DIR

KINDS = ("adapter", "merged", "gguf")
LOSS_IMAGE = "loss_curve.png"
CARD = "README.md"
MARK = "<!-- written by tui-tuner publish -->"
"""The card's last line: an earlier publish folder, which a new publish may replace."""

MODEL_FILES = ("adapter_config.json", "adapter_model.safetensors", "config.json", "generation_config.json",
               "model.safetensors", "model.safetensors.index.json")
"""Weights and their configs copied from the adapter (or a full run's model) folder."""
MODEL_FILE_PATTERNS = (re.compile(r"^model-\d+-of-\d+\.safetensors$"),)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json")
"""What `AutoTokenizer.from_pretrained` reads, with the chat template saved in training."""
LEFT_BEHIND = ("training_args.bin", "tui_tuner.json", "tui_tuner_export.json", "README.md")
"""Never published: a pickle of the trainer's arguments (local paths; the hub flags pickles), the run's
own bookkeeping (local paths) and PEFT's template card (the card here replaces it)."""

REPO_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")


class PublishError(Exception):
    """Publishing cannot go on; the message says why and what to do."""


@dataclass
class PublishFolder:
    """The folder that is (or would be) uploaded."""

    path: Path
    kind: str
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_repo_id(repo_id: str) -> str:
    """`org/name` as the hub accepts it; raises PublishError saying what is wrong."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise PublishError(f"--repo {repo_id!r}: give the repository as ORG/NAME (your user name or an "
                           "organisation, a slash, then the model's name), e.g. --repo alice/garden-bot-lora.")
    for part in parts:
        if not REPO_NAME.match(part) or ".." in part or "--" in part or len(part) > 96:
            raise PublishError(f"--repo {repo_id!r}: {part!r} is not a valid hub name. Use letters, digits, '-', "
                               "'_' and '.', at most 96 characters, starting and ending with a letter or digit, "
                               "without '--' or '..'.")
    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(repo_id)
    except ImportError:
        pass
    except Exception as exc:  # HFValidationError: the hub's own rules, said in its words
        raise PublishError(f"--repo {repo_id!r} is not a valid hub repository id: {exc}") from exc
    return repo_id


def default_publish_dir(source: ModelSource) -> Path:
    """`<run>/publish` (`publish-checkpoint-N` for a checkpoint)."""
    suffix = f"-{source.checkpoint_name}" if source.checkpoint_name else ""
    return source.output_dir / f"{PUBLISH_DIR}{suffix}"


def _model_file(name: str) -> bool:
    return name in MODEL_FILES or any(p.match(name) for p in MODEL_FILE_PATTERNS)


def _copy_adapter(source: ModelSource, folder: Path, log: Callable[[str], None]) -> list[str]:
    """The adapter (or full model) weights and the tokenizer, nothing of the run's bookkeeping."""
    weights_dir = source.adapter_dir or Path(source.base_model)
    if not weights_dir.is_dir():
        raise PublishError(f"{weights_dir} is not a folder; nothing to publish.")
    copied = []
    for item in sorted(weights_dir.iterdir()):
        if item.is_file() and _model_file(item.name):
            shutil.copyfile(item, folder / item.name)
            copied.append(item.name)
    if not any(n.endswith(".safetensors") for n in copied):
        raise PublishError(f"{weights_dir} has no safetensors weights (adapter_model.safetensors or "
                           "model*.safetensors); the run may not have saved its model. Publish a checkpoint "
                           "(--checkpoint N) or resume the run.")
    for tokenizer_dir in (weights_dir, Path(source.tokenizer_dir)):
        for name in TOKENIZER_FILES:
            if (tokenizer_dir / name).is_file() and not (folder / name).exists():
                shutil.copyfile(tokenizer_dir / name, folder / name)
                copied.append(name)
    if "tokenizer_config.json" not in copied:
        raise PublishError(f"no tokenizer found in {weights_dir} or {source.tokenizer_dir}; a published model "
                           "needs its tokenizer (and chat template) to be usable.")
    log(f"copied {len(copied)} files from {weights_dir}")
    return copied


def _point_adapter_at_hub_base(folder: Path, base_hub_id: str | None) -> str | None:
    """Write the base model's hub id into `adapter_config.json` (training may have read a local copy),
    so `AutoPeftModelForCausalLM` finds the base anywhere. Returns a note when it stays local."""
    import json

    config_path = folder / "adapter_config.json"
    if not config_path.is_file():
        return None
    data = json.loads(config_path.read_text(encoding="utf-8"))
    if base_hub_id:
        if data.get("base_model_name_or_path") != base_hub_id:
            data["base_model_name_or_path"] = base_hub_id
            config_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        return None
    return ("the base model is not a hub id, so adapter_config.json names a local folder: load the base "
            "yourself and apply the adapter with PeftModel.from_pretrained (see the card)")


def _clean_export_files(folder: Path) -> None:
    """Drop what an export writes for this machine only: its provenance file (local paths) and the
    absolute paths in the Modelfiles' comments."""
    for name in LEFT_BEHIND:
        if (folder / name).is_file():
            (folder / name).unlink()
    for modelfile in folder.glob("*.Modelfile"):
        text = modelfile.read_text(encoding="utf-8")
        cleaned = text.replace(str(modelfile), modelfile.name).replace(str(folder) + os.sep, "")
        if cleaned != text:
            modelfile.write_text(cleaned, encoding="utf-8")


def _earlier_publish(folder: Path) -> bool:
    """Whether `folder` holds what `publish` wrote before (its card says tui-tuner published it)."""
    try:
        return MARK in (folder / CARD).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def _prepare_out(out: Path, default: bool, source: ModelSource) -> None:
    if out.exists() and not out.is_dir():
        raise PublishError(f"--out {out} is a file; give a folder.")
    resolved = out.resolve()
    for kept in (source.run_dir, source.adapter_dir, Path(source.base_model), Path(source.tokenizer_dir)):
        if kept is not None and (resolved == kept.resolve() or resolved in kept.resolve().parents):
            raise PublishError(f"--out {out} is (or holds) {kept}, which publishing reads; give a new folder.")
    if out.is_dir() and any(out.iterdir()):
        if not default and not _earlier_publish(out):
            raise PublishError(f"--out {out} is not empty and holds no earlier publish folder; everything in it "
                               "would be uploaded. Give an empty or new folder.")
        shutil.rmtree(out)  # an earlier publish of the same run: replaced whole, nothing stale goes up
    out.mkdir(parents=True, exist_ok=True)


def build_publish_folder(source: ModelSource, out: Path | None = None, *, repo_id: str, kind: str = "adapter",
                         quants: list[str] | None = None, llama_cpp: str | None = None, verify: bool = True,
                         log: Callable[[str], None] = lambda s: None) -> PublishFolder:
    """Write the folder to upload: weights (per `kind`), `loss_curve.png` and the model card `README.md`."""
    from tui_tuner.export.loss_chart import loss_curve_png
    from tui_tuner.export.model_card import card_facts, render_card

    if kind not in KINDS:
        raise PublishError(f"unknown kind {kind!r}: choose one of {', '.join(KINDS)}.")
    check_repo_id(repo_id)
    if source.run_dir is None or source.config is None:
        raise PublishError(f"{source.label} is not a run; publish a run (its name or folder) so the model card "
                           "can say how it was trained.")
    if source.adapter_dir is None and source.kind != "model":
        raise PublishError(f"{source.label} has no saved model yet.")
    facts = card_facts(source)  # reads the run before any heavy work: a broken run fails fast
    default = out is None
    out = Path(out) if out is not None else default_publish_dir(source)
    _prepare_out(out, default, source)
    notes: list[str] = []
    checks: list[str] = []
    if kind == "adapter":
        _copy_adapter(source, out, log)
        note = _point_adapter_at_hub_base(out, facts.base_hub_id) if source.adapter_dir else None
        if note:
            notes.append(note)
    elif kind == "merged":
        from tui_tuner.export.exporters import export_merged

        result = export_merged(source, out, log=log)
        notes += result.notes
    else:
        from tui_tuner.export.exporters import export_gguf

        result = export_gguf(source, out, quant=quants or ["q8_0"], llama_cpp=llama_cpp, verify=verify, log=log)
        notes += result.notes
        for v in result.check.get("verification", []):
            if v.get("checked"):
                tokens, answers = v.get("tokens") or [], v.get("answers") or []
                checks.append(f"`{v['file']}` was run in llama.cpp before publishing: it tokenizes "
                              f"{sum(1 for r in tokens if r.get('same'))}/{len(tokens)} training conversations "
                              "exactly as training did"
                              + (f", and its greedy answers equal transformers' token for token on "
                                 f"{sum(1 for r in answers if r.get('same'))}/{len(answers)} prompts"
                                 if answers else "") + ".")
        unverified = [c for c in result.check.get("verification", []) if not c.get("checked")]
        if unverified:
            notes.append("the GGUF files were not run in llama.cpp before publishing (llama-cpp-python is not "
                         "installed); their tensors and tokenizer metadata were checked")
    _clean_export_files(out)
    image = None
    if facts.train_losses or facts.eval_losses:
        (out / LOSS_IMAGE).write_bytes(loss_curve_png(facts.train_losses, facts.eval_losses))
        image = LOSS_IMAGE
    files = sorted(p.name for p in out.iterdir() if p.is_file() and p.name != CARD)
    card = render_card(facts, repo_id=repo_id, kind=kind, files=files, loss_image=image, notes=notes,
                       checks=checks)
    (out / CARD).write_text(card + f"\n{MARK}\n", encoding="utf-8")
    log(f"model card written: {out / CARD}")
    return PublishFolder(out, kind, sorted(p.name for p in out.iterdir() if p.is_file()), notes)


# ---------------------------------------------------------------------------- the upload


def hub_offline() -> bool:
    """Whether huggingface_hub is told to stay offline (HF_HUB_OFFLINE, as it reads it)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def upload(folder: Path, repo_id: str, *, private: bool = False, commit_message: str | None = None,
           log: Callable[[str], None] = lambda s: None) -> str:
    """Create the model repository (kept when it exists) and upload `folder` as one commit; returns its URL.

    Raises PublishError for: offline mode, no token (not logged in), a token the hub refuses,
    no right to write in that namespace, a name the hub refuses, no connection.
    """
    check_repo_id(repo_id)
    if hub_offline():
        raise PublishError("HF_HUB_OFFLINE is set: huggingface_hub will not reach the hub. Unset it (or publish "
                           f"from a machine with internet; the folder {folder} is ready to copy there), or use "
                           "--dry-run to only write the folder.")
    try:
        from huggingface_hub import HfApi, get_token
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
    except ImportError as exc:
        raise PublishError(f"huggingface_hub is not installed ({exc}): `pip install huggingface_hub`.") from exc
    token = get_token()
    if not token:
        raise PublishError("not logged in to the Hugging Face Hub: run `hf auth login` (or set HF_TOKEN) with a "
                           "token that can write, then publish again. tui-tuner uses huggingface_hub's login and "
                           "never stores the token itself.")
    api = HfApi()
    try:
        log(f"creating {repo_id} ({'private' if private else 'public'}) if it does not exist")
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        log(f"uploading {folder}")
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                          commit_message=commit_message or "Upload from tui-tuner")
    except OfflineModeIsEnabled as exc:
        raise PublishError(f"huggingface_hub is in offline mode ({_scrub(str(exc), token)}); unset HF_HUB_OFFLINE.") from exc
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        message = _scrub(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, token)
        if status == 401:
            raise PublishError("the hub refused the token (401 unauthorized): it is invalid or expired. Log in "
                               "again with `hf auth login`.") from exc
        if status == 403:
            raise PublishError(f"the token may not write to {repo_id} (403 forbidden): use a token with write "
                               f"access, and a namespace (user or organisation) you may create models in. "
                               f"The hub said: {message}") from exc
        if status in (400, 422):
            raise PublishError(f"the hub refused the repository {repo_id!r}: {message}") from exc
        raise PublishError(f"the hub answered with an error{f' ({status})' if status else ''}: {message}") from exc
    except (OSError, ConnectionError) as exc:
        raise PublishError(f"cannot reach the Hugging Face Hub ({_scrub(str(exc), token) or type(exc).__name__}): "
                           "check the connection (or proxy settings), or copy the folder "
                           f"{folder} to a machine with internet and upload it there.") from exc
    except Exception as exc:  # httpx transport errors and the like: no connection
        name = type(exc).__name__
        if "Connect" in name or "Timeout" in name or "Network" in name or "Transport" in name:
            raise PublishError(f"cannot reach the Hugging Face Hub ({name}: {_scrub(str(exc), token)}): check the "
                               "connection or proxy settings, then publish again.") from exc
        raise
    return str(url) if url else f"https://huggingface.co/{repo_id}"
