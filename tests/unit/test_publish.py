"""Publishing without a trained run: repository names, the hub login and network errors (the hub
itself faked at HfApi, the network boundary), the loss-curve PNG, and what the card takes from a config."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from tui_tuner.export import publish
from tui_tuner.export.loss_chart import loss_curve_png
from tui_tuner.export.model_card import CardFacts, base_licence, dataset_hub_id, hyperparameters, metadata
from tui_tuner.export.publish import PublishError, check_repo_id, upload

SECRET = "hf_thisIsNotARealTokenButMustNeverShow123"


def read_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, RGB rows) of an 8-bit RGB PNG, checking signature, CRCs and filter bytes."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2) and b"IEND" in chunks
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = 1 + 3 * width
    assert len(raw) == stride * height
    rows = [raw[i * stride:(i + 1) * stride] for i in range(height)]
    assert all(r[0] == 0 for r in rows)
    return width, height, [r[1:] for r in rows]


def test_loss_curve_png_draws_both_curves():
    width, height, rows = read_png(loss_curve_png([(s, 3.0 - s * 0.1) for s in range(1, 21)],
                                                  [(10, 2.4), (20, 1.5)], width=400, height=200))
    assert (width, height) == (400, 200)
    pixels = {bytes(row[i:i + 3]) for row in rows for i in range(0, len(row), 3)}
    assert bytes((31, 119, 180)) in pixels and bytes((230, 110, 20)) in pixels  # train line, eval points
    only_train = read_png(loss_curve_png([(1, 2.0), (2, float("nan")), (3, 1.0)]))[2]
    assert bytes((230, 110, 20)) not in {bytes(r[i:i + 3]) for r in only_train for i in range(0, len(r), 3)}
    with pytest.raises(ValueError):
        loss_curve_png([(1, float("nan"))])


@pytest.mark.parametrize("repo", ["alice/garden-bot", "Org.Name/model_v1.2-lora"])
def test_valid_repo_ids(repo):
    assert check_repo_id(repo) == repo


@pytest.mark.parametrize("repo, why", [("garden-bot", "ORG/NAME"), ("a/b/c", "ORG/NAME"), ("alice/", "ORG/NAME"),
                                       ("alice/garden bot", "not a valid hub name"), ("alice/-bot", "not a valid"),
                                       ("alice/bot..v2", "not a valid"), ("alice/" + "x" * 97, "96")])
def test_invalid_repo_ids_say_what_is_wrong(repo, why):
    with pytest.raises(PublishError, match=why):
        check_repo_id(repo)


@pytest.fixture
def logged_in(monkeypatch, tmp_path):
    """huggingface_hub logged in with a token only from the environment (no token file of the user's)."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    folder = tmp_path / "publish"
    folder.mkdir()
    (folder / "README.md").write_text("card\n")
    return folder


def test_upload_refuses_offline_and_without_a_login(logged_in, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PublishError, match="HF_HUB_OFFLINE is set"):
        upload(logged_in, "alice/garden-bot")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(PublishError, match="not logged in.*hf auth login"):
        upload(logged_in, "alice/garden-bot")


def fake_hub(monkeypatch, *, fail_with=None):
    """HfApi's two network calls replaced by recorders (the hub is the network boundary)."""
    from huggingface_hub import HfApi

    calls = []

    def create_repo(self, repo_id, **kw):
        calls.append(("create_repo", repo_id, kw))
        if fail_with is not None:
            raise fail_with
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kw):
        calls.append(("upload_folder", kw["repo_id"], kw))
        return None

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


def http_client_module():
    """The HTTP library huggingface_hub is built on (httpx2 in its newest releases, httpx before)."""
    try:
        import httpx2 as httpx
    except ImportError:
        import httpx
    return httpx


def http_error(status: int, message: str):
    httpx = http_client_module()
    from huggingface_hub.errors import HfHubHTTPError

    response = httpx.Response(status, request=httpx.Request("POST", "https://huggingface.co/api/repos/create"))
    return HfHubHTTPError(message, response=response)


def test_upload_creates_the_repo_and_uploads_the_folder(logged_in, monkeypatch):
    calls = fake_hub(monkeypatch)
    assert upload(logged_in, "alice/garden-bot", private=True) == "https://huggingface.co/alice/garden-bot"
    (_, repo, create_kw), (_, repo2, upload_kw) = calls
    assert repo == repo2 == "alice/garden-bot"
    assert create_kw["private"] is True and create_kw["exist_ok"] is True and create_kw["repo_type"] == "model"
    assert Path(upload_kw["folder_path"]) == logged_in and upload_kw["repo_type"] == "model"
    assert "token" not in create_kw and "token" not in upload_kw  # huggingface_hub finds its own login


@pytest.mark.parametrize("status, said", [(401, "refused the token"), (403, "may not write to alice/garden-bot"),
                                          (400, "refused the repository"), (500, "answered with an error")])
def test_hub_errors_are_explained_and_never_show_the_token(logged_in, monkeypatch, status, said):
    fake_hub(monkeypatch, fail_with=http_error(status, f"boom: Authorization: Bearer {SECRET}"))
    with pytest.raises(PublishError, match=said) as caught:
        upload(logged_in, "alice/garden-bot")
    assert SECRET not in str(caught.value)


def test_no_connection_is_explained(logged_in, monkeypatch):
    httpx = http_client_module()

    fake_hub(monkeypatch, fail_with=httpx.ConnectError("[Errno -3] Temporary failure in name resolution"))
    with pytest.raises(PublishError, match="cannot reach the Hugging Face Hub"):
        upload(logged_in, "alice/garden-bot")


def test_cli_rejects_a_bad_repo_before_reading_the_run(capsys):
    from tui_tuner.cli import main

    assert main(["publish", "no-such-run", "--repo", "garden-bot", "--dry-run"]) == 2
    assert "ORG/NAME" in capsys.readouterr().err


def test_hyperparameters_leave_out_outputs_notifications_and_local_paths():
    raw = {"model": {"name_or_path": "/models/x", "max_seq_length": 512}, "method": "qlora",
           "lora": {"r": 8}, "quantization": {"quant_type": "nf4"},
           "data": {"train": "/home/me/secret.jsonl", "eval": None, "format": "chat"},
           "training": {"learning_rate": 1e-4}, "output": {"runs_dir": "/home/me/runs"},
           "notify": {"webhook": "https://hooks.example/secret"}, "samples": {"from_eval": 2}, "report_to": "none",
           "backend": "auto"}
    keys = dict(hyperparameters(raw))
    assert keys == {"model.max_seq_length": 512, "method": "qlora", "lora.r": 8, "quantization.quant_type": "nf4",
                    "data.format": "chat", "training.learning_rate": 1e-4, "backend": "auto"}


def test_dataset_ids_and_local_files(tmp_path):
    local = tmp_path / "org" / "name"
    local.mkdir(parents=True)
    assert dataset_hub_id("yahma/alpaca-cleaned") == "yahma/alpaca-cleaned"
    assert dataset_hub_id("hf://datasets/ServiceNow-AI/R1-Distill-SFT/v0/train.parquet") == "ServiceNow-AI/R1-Distill-SFT"
    assert dataset_hub_id(str(local)) is None  # a local path that exists wins
    assert dataset_hub_id("data/sample.jsonl") is None and dataset_hub_id(None) is None
    from tui_tuner.export.model_card import _data_info

    hub = _data_info("train", "yahma/alpaca-cleaned", {"format": "instruction", "train_examples": 2000},
                     ["split `train[:2000]`"])
    assert hub.hub_id == "yahma/alpaca-cleaned" and "split `train[:2000]`, instruction format, 2,000" in hub.description
    local = _data_info("train", str(local / "mine.jsonl"), None, ["split `train`"])
    assert local.hub_id is None and str(tmp_path) not in local.description and "`mine.jsonl`" in local.description


def test_base_licence_from_the_base_models_card(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    assert base_licence("/x/base", str(base))[0] is None
    (base / "README.md").write_text("---\nlicense: apache-2.0\nlicense_link: https://example.org/L\n---\n# x\n")
    assert base_licence("/x/base", str(base))[:2] == ("apache-2.0", "https://example.org/L")
    (base / "README.md").write_text("---\nlicense: other\nlicense_name: llama3.2\nlicense_link: LICENSE\n---\n")
    assert base_licence("/x/base", str(base))[0] == "other (llama3.2)"
    facts = card_facts_stub(base_licence="other (llama3.2)", base_licence_link="LICENSE")
    assert {k: metadata(facts, "adapter")[k] for k in ("license", "license_name", "license_link")} == {
        "license": "other", "license_name": "llama3.2", "license_link": "LICENSE"}
    licence, _, where = base_licence("meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-1B")
    assert licence is None and "not on this machine" in where


def test_publish_dir_name_is_spelled_in_files():
    from tui_tuner.rundir.files import PUBLISH_DIR

    assert publish.PUBLISH_DIR == PUBLISH_DIR == "publish"


def card_facts_stub(**changes) -> CardFacts:
    """CardFacts of a small LoRA run, for what is decided from the facts alone."""
    facts = dict(run_name="r", base_model="org/base", base_hub_id="org/base", base_builtin=False, base_revision=None,
                 base_licence=None, base_licence_link=None, licence_source="", method="lora", objective="sft",
                 config={}, hyperparameters=[], datasets=[], train_losses=[], eval_losses=[], status={}, summary=None,
                 gpus=[], eval_report=None, eval_report_name=None, checkpoint_name=None)
    facts.update(changes)
    return CardFacts(**facts)


def test_card_of_a_hub_base_links_it_and_names_hub_datasets():
    import yaml

    from tui_tuner.export.model_card import DatasetInfo, render_card

    facts = card_facts_stub(base_licence="llama3.2", datasets=[
        DatasetInfo("train", "yahma/alpaca-cleaned", "[yahma/alpaca-cleaned](https://huggingface.co/datasets/yahma/alpaca-cleaned)")],
        config={"lora": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear"}},
        hyperparameters=[("lora.r", 8), ("data.system_prompt", "a | b\nc")])
    card = render_card(facts, repo_id="alice/bot", kind="adapter", files=[], loss_image=None)
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["base_model"] == "org/base" and meta["datasets"] == ["yahma/alpaca-cleaned"]
    assert meta["license"] == "llama3.2" and meta["library_name"] == "peft"
    assert "[org/base](https://huggingface.co/org/base)" in card and "licensed `llama3.2`" in card
    assert '| `data.system_prompt` | `a \\| b c` |' in card  # a table cell stays one cell
    assert 'PeftModel.from_pretrained(base, "alice/bot")' in card and "No evaluation report" in card
