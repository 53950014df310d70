"""The quantization lab reports what bitsandbytes really does to a real tensor.

Every figure is checked against an independent re-implementation of the formats
(nearest NF4 / FP4 level per block of 64, INT8 per-row rounding) written here from
the published definitions, not from the lab's code.
"""

import math

import pytest
import torch

from tui_tuner.learn.quant_lab import analyze_tensor, run_quant_lab
from tui_tuner.learn.weights import list_tensors, load_tensor

# NF4 from the QLoRA paper (Dettmers et al. 2023, appendix E); FP4 = E2M1 values / 12 as bitsandbytes scales them
NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
       -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
       0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
       0.7229568362236023, 1.0]
FP4 = sorted(s * v / 12 for s in (1, -1) for v in (0, 0.0625, 2, 3, 4, 6, 8, 12))  # +0 and -0 both

KNOWN_TENSOR = "model.layers.0.mlp.down_proj.weight"  # 128 x 384


def nearest_level_roundtrip(W, levels, block=64):
    flat = W.reshape(-1).double()
    pad = (-flat.numel()) % block
    blocks = torch.nn.functional.pad(flat, (0, pad)).reshape(-1, block)
    absmax = blocks.abs().amax(dim=1, keepdim=True)
    scaled = blocks / absmax
    table = torch.tensor(levels, dtype=torch.float64)
    nearest = table[(scaled.unsqueeze(-1) - table).abs().argmin(dim=-1)]
    return (nearest * absmax).reshape(-1)[: flat.numel()].reshape(W.shape)


def int8_rowwise_roundtrip(W):
    half = W.to(torch.float16).double()
    scale = half.abs().amax(dim=1, keepdim=True)
    return torch.round(half * 127 / scale) * scale / 127


def stats(W, W_hat):
    err = (W_hat - W.double()).abs()
    snr = 10 * math.log10(float((W.double() ** 2).sum()) / float((err ** 2).sum()))
    return float(err.mean()), float(err.max()), snr


@pytest.fixture(scope="module")
def known(demo_model_dir):
    W = load_tensor(demo_model_dir, KNOWN_TENSOR)
    return W, run_quant_lab(str(demo_model_dir), KNOWN_TENSOR)


@pytest.mark.parametrize("key,levels", [("nf4", NF4), ("nf4-dq", NF4), ("fp4", FP4), ("fp4-dq", FP4)])
def test_4bit_errors_match_an_independent_roundtrip(known, key, levels):
    W, report = known
    mean, worst, snr = stats(W, nearest_level_roundtrip(W, levels))
    f = report.format(key)
    # double quant rounds the absmax scales to 8 bits, so it may differ a little from exact scales
    tol = 2e-3 if key.endswith("-dq") else 1e-5
    assert f.mean_abs_error == pytest.approx(mean, rel=max(tol, 1e-5))
    assert f.max_abs_error == pytest.approx(worst, rel=max(tol * 10, 1e-5))
    assert f.snr_db == pytest.approx(snr, abs=0.05 if key.endswith("-dq") else 1e-3)


def test_rows_not_a_multiple_of_64_long_round_trip_correctly():
    """bitsandbytes' native CPU dequantize misreads such matrices; the lab's figures must not."""
    torch.manual_seed(2)
    W = torch.randn(128, 352) * 0.02
    mean, _, snr = stats(W, nearest_level_roundtrip(W, NF4))
    f = analyze_tensor(W).format("nf4")
    assert f.mean_abs_error == pytest.approx(mean, rel=1e-5) and f.snr_db == pytest.approx(snr, abs=1e-3)


def test_int8_rowwise_matches_an_independent_roundtrip(known):
    W, report = known
    mean, worst, snr = stats(W, int8_rowwise_roundtrip(W))
    f = report.format("int8-rowwise")
    assert f.mean_abs_error == pytest.approx(mean, rel=1e-4)
    assert f.snr_db == pytest.approx(snr, abs=1e-2)


def test_sizes_count_every_constant(known):
    W, report = known
    n = W.numel()
    blocks = math.ceil(n / 64)
    nf4 = report.format("nf4")
    assert nf4.bytes_codes == n // 2
    assert nf4.bytes_constants == 4 * blocks            # one FP32 absmax per 64 weights
    assert nf4.bytes_tables == 16 * 4                   # the NF4 code map
    dq = report.format("nf4-dq")
    assert dq.bytes_constants == blocks + 4 * math.ceil(blocks / 256) + 4   # 8-bit absmax, nested absmax, offset
    assert dq.bytes_tables == 16 * 4 + 256 * 4
    assert nf4.bits_per_param == pytest.approx(nf4.bytes_total * 8 / n)
    assert nf4.bits_per_param_codes_and_constants == pytest.approx(4.5)
    assert dq.bits_per_param_codes_and_constants == pytest.approx(4 + 8 / 64 + 32 / 64 / 256 + 32 / n, rel=1e-3)
    assert report.format("int8-rowwise").bytes_constants == 4 * W.shape[0]
    assert report.bytes_before == n * W.element_size()


def test_histograms_cover_every_weight_and_mark_16_levels(known):
    W, report = known
    for hist in (report.histogram, report.block_histogram):
        assert sum(hist.counts) == W.numel()
        assert len(hist.edges) == len(hist.counts) + 1
        assert len(hist.nf4_levels) == 16 and len(hist.fp4_levels) == 16
        assert hist.explanation
    assert report.block_histogram.edges[0] == -1.0 and report.block_histogram.edges[-1] == 1.0
    assert report.block_histogram.nf4_levels == pytest.approx(NF4)
    absmax = float(W.abs().max())
    assert report.histogram.nf4_levels[-1] == pytest.approx(absmax)
    assert report.histogram.fp4_levels == pytest.approx([v * absmax for v in FP4])


def test_nf4_loses_less_than_fp4_on_a_gaussian_tensor():
    torch.manual_seed(0)
    report = analyze_tensor(torch.randn(256, 512) * 0.02, name="gaussian")
    assert report.format("nf4").mean_abs_error < report.format("fp4").mean_abs_error
    assert report.format("nf4").snr_db > report.format("fp4").snr_db
    assert report.least_error_4bit in ("nf4", "nf4-dq")
    assert "NF4" in report.verdict


def test_outliers_are_called_out_and_cost_4bit_formats_most():
    torch.manual_seed(0)
    W = torch.randn(256, 512) * 0.02
    W[torch.rand_like(W) < 0.001] = 0.5            # a few large outliers, as real LLM weights have
    report = analyze_tensor(W, name="outliers")
    assert report.stats["kurtosis"] > 3
    assert "heavy tails" in report.verdict
    clean = analyze_tensor(torch.randn(256, 512) * 0.02)
    assert report.format("nf4").snr_db < clean.format("nf4").snr_db


def test_bf16_tensor_is_measured_against_its_own_values():
    torch.manual_seed(1)
    W = (torch.randn(64, 192) * 0.02).to(torch.bfloat16)
    report = analyze_tensor(W)
    assert report.bytes_before == W.numel() * 2
    mean, _, _ = stats(W.float(), nearest_level_roundtrip(W.float(), NF4))
    assert report.format("nf4").mean_abs_error == pytest.approx(mean, rel=1e-3)


def test_constant_tensor_has_no_error_and_no_snr():
    report = analyze_tensor(torch.ones(128))
    assert all(f.mean_abs_error == 0 and f.snr_db is None for f in report.formats)


def test_listing_reads_headers_only(demo_model_dir):
    tensors = list_tensors(demo_model_dir)
    by_name = {t.name: t for t in tensors}
    assert by_name[KNOWN_TENSOR].shape[0] * by_name[KNOWN_TENSOR].shape[1] == by_name[KNOWN_TENSOR].numel
    assert all(t.dtype in ("F32", "BF16", "F16") for t in tensors)


def test_unknown_tensor_suggests_close_names(demo_model_dir):
    with pytest.raises(KeyError, match="Did you mean"):
        run_quant_lab(str(demo_model_dir), "model.layers.0.mlp.down_proj")


def test_integer_tensor_is_refused(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "config.json").write_text("{}")
    save_file({"ids": torch.arange(10, dtype=torch.int64)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="not floating-point"):
        run_quant_lab(str(tmp_path), "ids")


def test_missing_bitsandbytes_is_a_clear_error_not_a_traceback(demo_model_dir, monkeypatch, capsys):
    import sys

    from tui_tuner.cli import main

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    monkeypatch.setitem(sys.modules, "bitsandbytes.functional", None)
    assert main(["learn", "quant", str(demo_model_dir)]) == 2
    err = capsys.readouterr().err
    assert "pip install" in err and "Traceback" not in err


def test_mlx_affine_rounds_each_group_of_64_to_the_nearest_of_16_evenly_spaced_levels(known):
    """The definition: per group of 64 weights, levels edge + k * step (k = 0..15), where the edge is the group's
    weight of largest magnitude and the step makes zero a level; every weight goes to its nearest level."""
    pytest.importorskip("mlx.core", reason="the MLX row appears where mlx imports (pip install -e '.[mlx]')")
    W, report = known
    from tui_tuner.learn.quant_lab import roundtrip

    mlx = report.format("mlx-affine")
    restored, _, _ = roundtrip(W, "mlx-affine")
    groups, restored_groups = W.double().reshape(-1, 64), restored.double().reshape(-1, 64)
    for group, got in zip(groups[:40], restored_groups[:40]):
        edge = group[group.abs().argmax()]
        step = torch.diff(torch.unique(got)).min()
        levels = edge - torch.sign(edge) * step * torch.arange(16, dtype=torch.float64)
        assert levels.abs().min() < step * 1e-3  # zero is a level
        nearest = levels[(group.unsqueeze(-1) - levels).abs().argmin(dim=-1)]
        torch.testing.assert_close(got, nearest, atol=1e-5, rtol=0)
    numel = W.numel()
    assert mlx.bytes_codes == numel // 2 and mlx.bytes_constants == 2 * (numel // 64) * W.element_size()
    assert mlx.bits_per_param == pytest.approx(4 + 2 * 8 * W.element_size() / 64)
    assert "MLX's affine 4-bit" in report.verdict
