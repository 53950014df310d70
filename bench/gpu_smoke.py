"""GPU smoke test: every GPU path of tui-tuner once, one PASS / FAIL / SKIP line per path.

    bash bench/gpu_smoke.sh                 # on the GPU server: about 5 minutes on one GPU, no hub
    bash bench/gpu_smoke.sh --cpu           # the same paths on the CPU with the demo model (kept green by a test)
    bash bench/gpu_smoke.sh --skip gguf,gpu-resolution --keep /tmp/smoke

What each line proves is in docs/gpu-validation.md. The model is built here from a config
(a ~90M-parameter Llama on the GPU, the 2M demo model with --cpu) with the project's own
SentencePiece tokenizer, so nothing is downloaded from the hub. Runs go through the product's
own paths: `create_run` + the supervisor/worker process, `load_chat_model`, the exporters.
Exit status 1 when any line is FAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STEPS = ["nvml", "torch-cuda", "qlora-bf16", "lora-bf16-weights", "fit-vs-peak", "chat-base-tuned",
         "merged-export-chat", "gguf-export", "unsloth", "all-reduce", "gpu-resolution"]

SMOKE_MODEL = {"hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 12,
               "num_key_value_heads": 4}
"""The GPU model: ~90M parameters (every width a multiple of 64), big enough for real kernels and memory."""


@dataclass
class Smoke:
    cpu: bool
    work: Path
    steps: int
    lines: list[tuple[str, str, str]] = field(default_factory=list)
    runs: dict[str, object] = field(default_factory=dict)
    model_dir: Path | None = None

    def record(self, name: str, verdict: str, detail: str) -> None:
        self.lines.append((name, verdict, detail))
        print(f"{verdict:<4} {name:<20} {detail}", flush=True)


class Skip(Exception):
    """This path cannot run here; the message says why."""


# ---------------------------------------------------------------------------- helpers


def build_model(smoke: Smoke) -> Path:
    """The model the runs train: the demo model (--cpu) or a ~90M Llama with the demo tokenizer."""
    from tui_tuner.models.demo import ensure_demo_model

    demo = ensure_demo_model()
    if smoke.cpu:
        return demo
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = smoke.work / "smoke-llama-90m"
    if (out / "config.json").is_file():
        return out
    out.mkdir(parents=True)
    for f in demo.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")) or f.name == "generation_config.json":
            shutil.copy2(f, out / f.name)
    base = json.loads((demo / "config.json").read_text())
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=base["vocab_size"], max_position_embeddings=1024, rms_norm_eps=1e-5,
                      tie_word_embeddings=False, bos_token_id=base.get("bos_token_id"),
                      eos_token_id=base.get("eos_token_id"), pad_token_id=base.get("pad_token_id"), **SMOKE_MODEL)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(str(out))
    print(f"     built {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M-parameter model in {out}", flush=True)
    return out


def train(smoke: Smoke, name: str, **overrides) -> object:
    """Train one run through the real supervisor + worker; returns its RunDir (finished or not)."""
    from tui_tuner.config.schema import apply_overrides, validate_raw
    from tui_tuner.rundir.runs import create_run, start_worker

    raw = {"model": {"name_or_path": str(smoke.model_dir), "max_seq_length": 256},
           "data": {"train": str(REPO / "data" / "sample.jsonl"), "eval": str(REPO / "data" / "heldout.jsonl")},
           "training": {"max_steps": smoke.steps, "batch_size": 4, "grad_accumulation": 1, "learning_rate": 1e-3,
                        "logging_steps": 1, "save_steps": smoke.steps, "eval_steps": smoke.steps, "seed": 42},
           "output": {"run_name": name, "runs_dir": str(smoke.work / "runs")}, "report_to": "none"}
    loaded = validate_raw(apply_overrides(raw, [f"{k}={v}" for k, v in overrides.items()]))
    if not loaded.ok:
        raise AssertionError("; ".join(i.format() for i in loaded.issues))
    run = create_run(loaded.config, str(REPO), probe=True)
    start_worker(run)
    deadline = time.monotonic() + 600
    while not run.status().is_final and time.monotonic() < deadline:
        time.sleep(0.5)
    smoke.runs[name] = run
    return run


def finished(run) -> dict:
    st = run.status()
    if st.state != "finished":
        raise AssertionError(f"run ended {st.state}: {st.error} ({st.hint}); log: {run.path / 'train.log'}")
    return st


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


# ---------------------------------------------------------------------------- the paths


def step_nvml(smoke: Smoke) -> str:
    from tui_tuner.fit.hardware import probe

    hw = probe(smoke.work)
    if smoke.cpu:
        return f"NVML read without error: {len(hw.gpus)} GPU(s); {hw.gpu_unavailable_reason or 'GPUs present'}"
    if not hw.gpus:
        raise AssertionError(f"NVML shows no GPU: {hw.gpu_unavailable_reason}")
    if hw.torch_problem:
        raise AssertionError(hw.torch_problem)
    g = hw.visible_gpus[0]
    return (f"{len(hw.gpus)} GPU(s), driver {hw.driver_version} (CUDA {hw.cuda_driver_version}), torch built for "
            f"CUDA {hw.torch_cuda}; {g.name} {g.memory_free / 2**30:.1f} GiB free, temp {g.temperature_c} C, "
            f"{len(g.processes)} process(es)")


def step_torch_cuda(smoke: Smoke) -> str:
    if smoke.cpu:
        raise Skip("--cpu: no CUDA")
    import torch

    from tui_tuner.fit.cuda import bf16_supported
    from tui_tuner.fit.hardware import probe

    hw = probe(smoke.work)
    if not torch.cuda.is_available():
        raise AssertionError("torch.cuda.is_available() is False")
    if torch.cuda.device_count() != len(hw.visible_gpus):
        raise AssertionError(f"torch sees {torch.cuda.device_count()} GPU(s), NVML with CUDA_VISIBLE_DEVICES "
                             f"{len(hw.visible_gpus)}")
    dtype = torch.bfloat16 if bf16_supported() else torch.float16
    a = torch.randn(1024, 1024, device="cuda", dtype=dtype)
    ok = torch.isfinite(a @ a).all().item()
    cap = torch.cuda.get_device_capability()
    if not ok:
        raise AssertionError("a 1024x1024 matmul gave non-finite values")
    return (f"torch {torch.__version__} CUDA {torch.version.cuda}, {torch.cuda.get_device_name()} sm_{cap[0]}{cap[1]}, "
            f"native bf16 {bf16_supported()} (emulated counts: {torch.cuda.is_bf16_supported()}), {dtype} matmul ok")


def expected_precision(smoke: Smoke) -> str:
    if smoke.cpu:
        return "fp32"
    from tui_tuner.fit.cuda import bf16_supported

    return "bf16" if bf16_supported() else "fp16"


def step_qlora(smoke: Smoke) -> str:
    run = train(smoke, "smoke-qlora", method="qlora", **{"model.dtype": "auto", "quantization.compute_dtype": "auto",
                                                          "training.gradient_checkpointing": "true"})
    st = finished(run)
    precision, want = st.extra.get("precision"), expected_precision(smoke)
    if precision != want:
        raise AssertionError(f"trained in {precision}, expected {want} (the compute dtype)")
    return f"{st.step} steps, precision {precision}, backend {st.backend}, final loss {last_loss(run)}"


def step_lora_bf16(smoke: Smoke) -> str:
    if not smoke.cpu:
        from tui_tuner.fit.cuda import bf16_supported

        if not bf16_supported():
            raise Skip("this GPU has no native bf16 (T4/V100): LoRA trains on fp16 weights here")
    run = train(smoke, "smoke-lora-bf16", method="lora", **{"model.dtype": "bfloat16"})
    st = finished(run)
    want = "fp32" if smoke.cpu else "bf16"
    if st.extra.get("precision") != want:
        raise AssertionError(f"trained in {st.extra.get('precision')}, expected {want}")
    return f"{st.step} steps on bfloat16 weights, precision {st.extra.get('precision')}, loss {last_loss(run)}"


def last_loss(run) -> str:
    from tui_tuner.rundir.events import read_events

    events, _ = read_events(run.events_path)
    losses = [e["loss"] for e in events if e.get("kind") == "log" and "loss" in e]
    return f"{losses[0]:.3f} -> {losses[-1]:.3f}" if losses else "?"


def step_fit(smoke: Smoke) -> str:
    lines = []
    for name in ("smoke-qlora", "smoke-lora-bf16"):
        run = smoke.runs.get(name)
        probe = run.status().probe if run is not None else None
        if not probe:
            continue
        est, peak = probe.get("estimate_bytes"), probe.get("measured_peak_bytes")
        if not est or not peak:
            raise AssertionError(f"{name}: the probe recorded estimate {est} and peak {peak}")
        ratio = peak / est
        lines.append(f"{name.removeprefix('smoke-')} measured {peak / 2**20:.0f} MiB vs estimate {est / 2**20:.0f} MiB "
                     f"(x{ratio:.2f})")
        if not smoke.cpu and not 0.4 <= ratio <= 1.6:
            raise AssertionError("; ".join(lines) + ": the estimate is off by more than the documented margin")
    if not lines:
        raise Skip("no run with a probe to compare (the training paths did not run)")
    return "; ".join(lines)


def chat_run(run, prompt: str = "What is LoRA?") -> tuple[str, str]:
    from tui_tuner.inference.chat_model import GenerationSettings, load_chat_model, resolve_source

    chat = load_chat_model(resolve_source(run.path))
    settings = GenerationSettings(temperature=0, max_new_tokens=12)
    messages = [{"role": "user", "content": prompt}]
    tuned = chat.generate(messages, settings, use_adapter=True)
    base = chat.generate(messages, settings, use_adapter=False) if chat.has_adapter else tuned
    return base.text, tuned.text


def finished_run(smoke: Smoke, *names: str):
    for name in names:
        run = smoke.runs.get(name)
        if run is not None and run.status().state == "finished":
            return run
    raise Skip("no finished run to use (see the training lines above)")


def step_chat(smoke: Smoke) -> str:
    run = finished_run(smoke, "smoke-qlora", "smoke-lora-bf16")
    base, tuned = chat_run(run)
    if not tuned.strip() and not base.strip():
        raise AssertionError("both answers are empty")
    return f"base {base[:30]!r} | tuned {tuned[:30]!r} ({'differ' if base != tuned else 'same'})"


def step_merged(smoke: Smoke) -> str:
    from tui_tuner.export.exporters import export_merged
    from tui_tuner.inference.chat_model import GenerationSettings, load_chat_model, resolve_source

    run = finished_run(smoke, "smoke-lora-bf16", "smoke-qlora")
    result = export_merged(resolve_source(run.path), smoke.work / "merged")
    chat = load_chat_model(resolve_source(result.path))
    text = chat.generate([{"role": "user", "content": "What is LoRA?"}],
                         GenerationSettings(temperature=0, max_new_tokens=12)).text
    return f"{result.path.name}: {len(result.files)} files, answers {text[:30]!r}"


def step_gguf(smoke: Smoke) -> str:
    from tui_tuner.export.exporters import export_gguf
    from tui_tuner.export.llama_cpp import ConverterUnavailable, find_converter
    from tui_tuner.inference.chat_model import resolve_source

    run = finished_run(smoke, "smoke-lora-bf16", "smoke-qlora")
    try:
        find_converter(fetch=not smoke.cpu)
    except ConverterUnavailable as exc:
        raise Skip(str(exc).splitlines()[0]) from None
    result = export_gguf(resolve_source(run.path), smoke.work / "gguf", quant="q8_0")
    return f"{result.path.name} {result.path.stat().st_size / 2**20:.1f} MiB, check {result.check.get('ok', result.check)}"


def step_unsloth(smoke: Smoke) -> str:
    if smoke.cpu:
        raise Skip("--cpu: Unsloth needs a CUDA GPU")
    probe = subprocess.run([sys.executable, "-c", "import unsloth"], capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        tail = (probe.stderr.strip().splitlines() or ["?"])[-1]
        raise AssertionError(f"import unsloth failed: {tail} (pip install -e '.[gpu]')")
    run = train(smoke, "smoke-unsloth", method="qlora", backend="unsloth")
    st = finished(run)
    if st.backend != "unsloth":
        raise AssertionError(f"trained with {st.backend}: {st.backend_reason}")
    chat = subprocess.run([sys.executable, "-m", "tui_tuner", "chat", str(run.path), "--prompt", "What is LoRA?"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    if chat.returncode != 0:
        raise AssertionError(f"tui-tuner chat failed: {chat.stderr.strip()[-300:]}")
    return f"{st.step} steps, precision {st.extra.get('precision')}, loss {last_loss(run)}; chat {chat.stdout.strip()[:40]!r}"


def step_all_reduce(smoke: Smoke) -> str:
    n = 2 if smoke.cpu else max(1, min(2, gpu_count()))
    if not smoke.cpu and gpu_count() == 0:
        raise AssertionError("no CUDA GPU for NCCL")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           str(Path(__file__).resolve()), "--all-reduce-worker", "gloo" if smoke.cpu else "nccl"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise AssertionError(f"torchrun exited {out.returncode}: {(out.stderr or out.stdout).strip()[-400:]}")
    sums = [line for line in out.stdout.splitlines() if line.startswith("all-reduce")]
    if len(sums) != n or any(f"sum={n * (n + 1) // 2}" not in s for s in sums):
        raise AssertionError(f"unexpected results: {sums}")
    return f"{'gloo' if smoke.cpu else 'NCCL'} all-reduce over {n} process(es): {sums[0]}"


def all_reduce_worker(backend: str) -> int:
    import torch
    import torch.distributed as dist

    dist.init_process_group(backend)
    rank = dist.get_rank()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if backend == "nccl" else torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(device)
    t = torch.tensor([float(rank + 1)], device=device)
    dist.all_reduce(t)
    print(f"all-reduce rank {rank}: sum={int(t.item())}", flush=True)
    dist.destroy_process_group()
    return 0


def step_resolution(smoke: Smoke) -> str:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        raise Skip("PyPI is not reachable from here; CI runs .ci/gpu_resolution") from None
    out = subprocess.run(["bash", str(REPO / ".ci" / "gpu_resolution")], capture_output=True, text=True, timeout=400)
    last = (out.stdout.strip().splitlines() or out.stderr.strip().splitlines() or ["?"])[-1]
    if out.returncode != 0:
        raise AssertionError(last)
    return last


RUNNERS: dict[str, Callable[[Smoke], str]] = {
    "nvml": step_nvml, "torch-cuda": step_torch_cuda, "qlora-bf16": step_qlora, "lora-bf16-weights": step_lora_bf16,
    "fit-vs-peak": step_fit, "chat-base-tuned": step_chat, "merged-export-chat": step_merged, "gguf-export": step_gguf,
    "unsloth": step_unsloth, "all-reduce": step_all_reduce, "gpu-resolution": step_resolution,
}


def isolate_cache(work: Path) -> None:
    """Build the demo model into the work folder (never touching the user's cache), keeping a
    llama.cpp converter the user's cache already has for the GGUF path."""
    from tui_tuner.export.llama_cpp import ENV_DIR, ConverterUnavailable, find_converter

    if not os.environ.get(ENV_DIR):
        try:
            os.environ[ENV_DIR] = str(find_converter(fetch=False).root)
        except ConverterUnavailable:
            pass
    os.environ["TUI_TUNER_CACHE"] = str(work / "cache")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="run the paths on the CPU with the demo model (a dry run)")
    p.add_argument("--skip", default="", help=f"comma-separated paths to leave out: {', '.join(STEPS)}")
    p.add_argument("--steps", type=int, help="training steps per run (default 20 on a GPU, 3 with --cpu)")
    p.add_argument("--keep", help="work folder to keep (default: a temporary one, removed at the end)")
    p.add_argument("--all-reduce-worker", metavar="BACKEND", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.all_reduce_worker:
        return all_reduce_worker(args.all_reduce_worker)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(STEPS)
    if unknown:
        p.error(f"--skip {','.join(sorted(unknown))}: not a path; choose from {', '.join(STEPS)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if args.cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the CPU paths even on a GPU machine
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tui-tuner-smoke-"))
    work.mkdir(parents=True, exist_ok=True)
    isolate_cache(work)
    smoke = Smoke(cpu=args.cpu, work=work, steps=args.steps or (3 if args.cpu else 20))
    started = time.monotonic()
    print(f"tui-tuner GPU smoke test ({'CPU dry run' if args.cpu else 'GPU'}), work folder {work}", flush=True)
    try:
        smoke.model_dir = build_model(smoke)
        for name in STEPS:
            if name in skip:
                smoke.record(name, "SKIP", "--skip")
                continue
            t0 = time.monotonic()
            try:
                detail = RUNNERS[name](smoke)
                smoke.record(name, "PASS", f"{detail} [{time.monotonic() - t0:.0f}s]")
            except Skip as exc:
                smoke.record(name, "SKIP", str(exc))
            except Exception as exc:  # one broken path must not hide the others
                traceback.print_exc(file=sys.stderr)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                smoke.record(name, "FAIL", f"{first} [{time.monotonic() - t0:.0f}s]")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    failed = [n for n, v, _ in smoke.lines if v == "FAIL"]
    print(f"{len(smoke.lines) - len(failed)}/{len(smoke.lines)} without failure in {time.monotonic() - started:.0f}s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
