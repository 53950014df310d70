"""The preflight probe on CPU with a tiny torch model: it measures, projects and refuses what cannot fit."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tui_tuner.train import probe  # noqa: E402


class TinyLM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(50, 64)
        self.out = torch.nn.Linear(64, 50)

    def forward(self, input_ids, labels, attention_mask=None):
        logits = self.out(self.emb(input_ids))
        loss = torch.nn.functional.cross_entropy(logits.view(-1, 50), labels.view(-1), ignore_index=-100)
        return type("Out", (), {"loss": loss})()


class Rows(dict):
    """A column-or-row indexable stand-in for a datasets.Dataset."""

    def __getitem__(self, key):
        if isinstance(key, int):
            return {"input_ids": dict.__getitem__(self, "input_ids")[key]}
        return dict.__getitem__(self, key)


class FakeTrainer:
    """What the probe uses of an SFTTrainer: the prepared dataset, its collator, input preparation."""

    def __init__(self, lengths):
        self.train_dataset = Rows({"input_ids": [[1] * n for n in lengths]})

    def data_collator(self, rows):
        longest = max(len(r["input_ids"]) for r in rows)
        ids = torch.tensor([r["input_ids"] + [0] * (longest - len(r["input_ids"])) for r in rows])
        return {"input_ids": ids, "labels": ids.clone()}

    def _prepare_inputs(self, batch):
        return batch


def test_probe_uses_the_longest_batch_and_measures_a_peak():
    model = TinyLM()
    t = FakeTrainer([5, 40, 7, 33, 12])
    result = probe.run_probe(t, model, batch_size=2, optimizer_name="adamw_torch", estimate_bytes=123)
    assert result.seq_len == 40 and result.batch_size == 2
    assert result.device == "cpu" and result.measured_peak_bytes > 0 and result.fits
    n = sum(p.numel() for p in model.parameters())
    assert result.optimizer_state_bytes == 8 * n
    assert result.projected_peak_bytes == result.measured_peak_bytes + 8 * n
    assert result.estimate_bytes == 123
    assert all(p.grad is None for p in model.parameters())  # the probe leaves no gradients behind


def test_probe_refuses_a_run_that_will_not_fit(monkeypatch):
    monkeypatch.setattr(probe, "HEADROOM", 1e-6)
    with pytest.raises(probe.ProbeDoesNotFit, match="preflight probe measured") as err:
        probe.run_probe(FakeTrainer([10, 20]), TinyLM(), batch_size=2, optimizer_name="sgd")
    assert not err.value.result.fits and err.value.result.capacity_bytes > 0


def test_optimizer_state_by_optimizer():
    model = TinyLM()
    n = sum(p.numel() for p in model.parameters())
    assert probe.optimizer_state_bytes(model, "paged_adamw_8bit") == 2 * n
    assert probe.optimizer_state_bytes(model, "sgd") == 0
