"""`tui-tuner publish` on a run trained by tui-tuner's own worker (the shared `finished_run`, copied):
the dry-run folder (model card, loss curve, weights) loads with PEFT / transformers, and the upload
sends exactly that folder with the token never shown or written (HfApi faked: the hub is the
network boundary)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.unit.test_publish import SECRET, fake_hub, read_png
from tui_tuner.cli import main
from tui_tuner.export.model_card import NOT_HYPERPARAMETERS, SHOWN_ELSEWHERE

REPO_ID = "alice/garden-bot"
NEVER_PUBLISHED = {"training_args.bin", "tui_tuner.json", "tui_tuner_export.json"}


@pytest.fixture(scope="module")
def evaluated_run(finished_run, tmp_path_factory):
    """A copy of the finished run with an eval report comparing tuned and base (the shared run stays untouched)."""
    runs = tmp_path_factory.mktemp("publish-runs")
    run_path = runs / finished_run.name
    shutil.copytree(finished_run.path, run_path)
    assert main(["eval", str(run_path), "--compare-base", "--limit", "2", "--max-new-tokens", "4"]) == 0
    return run_path


def card_of(folder: Path) -> tuple[dict, str]:
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def logits(model, tokenizer):
    import torch

    ids = tokenizer("Where does Bramble sleep?", return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits


def test_dry_run_writes_a_card_with_every_hyperparameter_the_eval_table_and_the_loss_image(evaluated_run, capsys):
    assert main(["publish", str(evaluated_run), "--repo", REPO_ID, "--dry-run"]) == 0
    out = capsys.readouterr()
    folder = evaluated_run / "publish"
    assert out.out.splitlines()[0] == str(folder) and "nothing uploaded" in out.err
    files = {p.name for p in folder.iterdir()}
    assert {"README.md", "loss_curve.png", "adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
            "tokenizer_config.json", "chat_template.jinja"} <= files
    assert not files & NEVER_PUBLISHED

    meta, body = card_of(folder)
    assert meta["library_name"] == "peft" and meta["license"] == "unknown" and "lora" in meta["tags"]
    assert "base_model" not in meta  # the demo model is built locally, not a hub id
    raw = yaml.safe_load((evaluated_run / "config.yaml").read_text())
    expected = [f"{k}.{sub}" if isinstance(v, dict) else k for k, v in raw.items() if k not in NOT_HYPERPARAMETERS
                for sub in (v if isinstance(v, dict) else [None])]
    expected = [k for k in expected if k not in SHOWN_ELSEWHERE]
    assert len(expected) > 30
    for key in expected:
        assert f"| `{key}` |" in body, key
    assert "| `training.learning_rate` | `0.003` |" in body and "| `lora.r` | `16` |" in body
    assert "webhook" not in body and "runs_dir" not in body
    assert "`sample.jsonl`" in body and str(Path(raw["data"]["train"]).parent) not in body  # no local folders
    assert "final training loss" in body and "best training loss" in body and "best eval loss" in body
    assert "| | tuned | base |" in body and "| held-out loss |" in body  # the eval report's table
    assert "![Loss curve" in body and "(loss_curve.png)" in body
    assert "AutoPeftModelForCausalLM.from_pretrained(\"alice/garden-bot\"" in body and "llama.cpp" in body
    assert "Ollama" in body and "## Hardware and time" in body and "CPU only" in body
    assert "licence is **unknown**" in body
    width, height, _ = read_png((folder / "loss_curve.png").read_bytes())
    assert width > 100 and height > 100

    # The folder loads as PEFT adapter + tokenizer, and answers exactly as the run's own adapter does.
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    published = AutoPeftModelForCausalLM.from_pretrained(str(folder))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert tokenizer.chat_template
    base_path = json.loads((evaluated_run / "adapter" / "tui_tuner.json").read_text())["base_model_path"]
    original = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path), str(evaluated_run / "adapter"))
    assert (logits(published, tokenizer) - logits(original, tokenizer)).abs().max().item() < 1e-5


def test_merged_dry_run_is_a_plain_transformers_model(evaluated_run, tmp_path, capsys):
    out = tmp_path / "merged-publish"
    assert main(["publish", str(evaluated_run), "--repo", REPO_ID, "--merged", "--dry-run", "--out", str(out)]) == 0
    meta, body = card_of(out)
    assert meta["library_name"] == "transformers" and "AutoModelForCausalLM.from_pretrained" in body
    assert (out / "model.safetensors").is_file() and not {p.name for p in out.iterdir()} & NEVER_PUBLISHED
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(str(out))
    # A non-empty folder that is not an earlier publish is never overwritten (all of it would go up).
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["publish", str(evaluated_run), "--repo", REPO_ID, "--dry-run", "--out", str(other)]) == 2
    assert "not empty" in capsys.readouterr().err and (other / "notes.txt").is_file()
    adapter = evaluated_run / "adapter"  # holds PEFT's README.md: still never replaced
    assert main(["publish", str(evaluated_run), "--repo", REPO_ID, "--dry-run", "--out", str(adapter)]) == 2
    assert "publishing reads" in capsys.readouterr().err and (adapter / "adapter_model.safetensors").is_file()
    # An earlier publish folder is replaced whole.
    assert main(["publish", str(evaluated_run), "--repo", REPO_ID, "--dry-run", "--out", str(out)]) == 0
    assert not (out / "model.safetensors").exists() and (out / "adapter_model.safetensors").is_file()


def test_upload_sends_the_folder_and_never_shows_or_writes_the_token(evaluated_run, tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = fake_hub(monkeypatch)
    uploaded: list[set[str]] = []
    from huggingface_hub import HfApi

    recorded_upload = HfApi.upload_folder

    def upload_folder(self, **kw):
        uploaded.append({p.name for p in Path(kw["folder_path"]).iterdir()})
        return recorded_upload(self, **kw)

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    out = tmp_path / "to-upload"
    assert main(["publish", str(evaluated_run), "--repo", REPO_ID, "--private", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert [c[0] for c in calls] == ["create_repo", "upload_folder"]
    assert calls[0][2]["private"] is True and calls[1][2]["folder_path"] == str(out)
    assert uploaded == [{p.name for p in out.iterdir()}]
    assert {"README.md", "adapter_model.safetensors", "loss_curve.png"} <= uploaded[0]
    assert printed.out.strip().endswith(f"https://huggingface.co/{REPO_ID}")
    assert SECRET not in printed.out + printed.err
    for folder in (evaluated_run, out):
        for path in folder.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_gguf_dry_run_has_the_files_modelfiles_and_llama_cpp_usage(evaluated_run, tmp_path, capsys):
    out = tmp_path / "gguf-publish"
    code = main(["publish", str(evaluated_run), "--repo", REPO_ID, "--gguf", "q8_0", "--dry-run", "--out", str(out)])
    err = capsys.readouterr().err
    if code == 2 and "converter" in err.lower():
        pytest.skip(f"llama.cpp's GGUF converter is unavailable here: {err.strip().splitlines()[-1]}")
    assert code == 0, err
    names = {p.name for p in out.iterdir()}
    gguf = next(n for n in names if n.endswith("-q8_0.gguf"))
    modelfile = gguf.removesuffix(".gguf") + ".Modelfile"
    assert modelfile in names and not names & NEVER_PUBLISHED
    assert str(tmp_path) not in (out / modelfile).read_text()  # no local paths in what goes up
    meta, body = card_of(out)
    assert meta["library_name"] == "gguf" and "gguf" in meta["tags"]
    assert f"llama-cli -hf {REPO_ID}:Q8_0" in body and f"ollama run hf.co/{REPO_ID}:Q8_0" in body
    assert f"ollama create garden-bot -f {modelfile}" in body
    from tui_tuner.export.verify import llama_cpp_python_installed

    if llama_cpp_python_installed():  # the proof in llama.cpp ran: the card says so
        assert "### Checked before publishing" in body and f"`{gguf}` was run in llama.cpp" in body
