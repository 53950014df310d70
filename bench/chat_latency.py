"""Time to first token and tokens/s of tui-tuner's streaming chat path vs plain `model.generate`.

    PYTHONPATH=. python bench/chat_latency.py                    # demo model + a fresh LoRA adapter
    PYTHONPATH=. python bench/chat_latency.py --target runs/x    # any run, checkpoint, adapter or model folder

Both paths use the same loaded model, the same prompt and greedy decoding, so they
generate the same tokens; the difference is tui-tuner's thread + TextIteratorStreamer +
stop-event overhead. Prints the median of several repeats and the throughput ratio
(streaming / plain; the target is >= 0.95).

On a CPU, `--threads` (default 1) pins PyTorch's intra-op threads for both paths: on a
shared, busy machine OpenMP's spinning worker threads make the numbers of whichever
thread happens to contend swing by 10x, which measures the scheduler, not the paths.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _fresh_adapter(folder: Path) -> Path:
    """A LoRA adapter with non-zero weights on the demo model, so the PEFT path is exercised."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tui_tuner.models.demo import ensure_demo_model

    base = ensure_demo_model()
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM",
                                             init_lora_weights=False))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default=None, help="run, checkpoint, adapter or model folder (default: demo + LoRA)")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads for both paths (0: leave as is)")
    args = parser.parse_args(argv)

    import torch

    if args.threads and not torch.cuda.is_available():
        torch.set_num_threads(args.threads)

    from tui_tuner.inference.chat_model import GenerationSettings, load_chat_model, resolve_source

    with tempfile.TemporaryDirectory() as tmp:
        target = args.target or str(_fresh_adapter(Path(tmp) / "adapter"))
        chat = load_chat_model(resolve_source(target))
    messages = [{"role": "user", "content": "Tell me about Bramble, the garden robot, in detail."}]
    settings = GenerationSettings(temperature=0, max_new_tokens=args.new_tokens, repetition_penalty=1.0)
    ids = torch.tensor([chat.fit_prompt(messages, args.new_tokens)[0]], device=chat.device)
    kwargs = chat.generate_kwargs(settings)

    def plain(max_new: int) -> tuple[float, int]:
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = chat.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                      **{**kwargs, "max_new_tokens": max_new})
        return time.perf_counter() - t0, out.shape[1] - ids.shape[1]

    def streamed() -> tuple[float, float, int]:
        # The path `tui-tuner chat` and the Chat screen's worker use: text handed out token by token.
        r = chat.generate(messages, settings, on_text=lambda piece: None)
        return r.elapsed_s, r.first_token_s or 0.0, r.new_tokens

    def iterated() -> tuple[float, float, int]:
        # `ChatModel.stream`: generation on its own thread, read through a queue (an iterator API).
        stream = chat.stream(messages, settings)
        for _ in stream:
            pass
        r = stream.result()
        return r.elapsed_s, r.first_token_s or 0.0, r.new_tokens

    plain(8), streamed(), iterated()  # warm-up
    plain_tps, plain_ttft, ours_tps, ours_ttft, counts = [], [], [], [], set()
    iter_tps, iter_ttft = [], []
    for i in range(args.repeats):
        # alternate which path goes first, so a slow moment of the machine hits both alike
        for path in (("plain", "ours", "iter") if i % 2 == 0 else ("iter", "ours", "plain")):
            if path == "plain":
                elapsed, n = plain(args.new_tokens)
                plain_tps.append(n / elapsed)
                plain_ttft.append(plain(1)[0])
            elif path == "ours":
                elapsed, first, n2 = streamed()
                ours_tps.append(n2 / elapsed)
                ours_ttft.append(first)
            else:
                elapsed, first, _ = iterated()
                iter_tps.append(_ / elapsed)
                iter_ttft.append(first)
        counts.add((n, n2))
    p_tps, o_tps = statistics.median(plain_tps), statistics.median(ours_tps)
    print(f"model: {chat.source.label}  device: {chat.device}  threads: {torch.get_num_threads()}  prompt: {ids.shape[1]} tokens  "
          f"generated (plain, streaming): {sorted(counts)}")
    print(f"plain model.generate : {p_tps:8.1f} tokens/s   time to first token {statistics.median(plain_ttft) * 1000:7.1f} ms")
    print(f"tui-tuner streaming  : {o_tps:8.1f} tokens/s   time to first token {statistics.median(ours_ttft) * 1000:7.1f} ms")
    print(f"  (iterator, own thread): {statistics.median(iter_tps):8.1f} tokens/s   time to first token "
          f"{statistics.median(iter_ttft) * 1000:7.1f} ms   ratio {statistics.median(iter_tps) / p_tps:.3f}")
    ratio = o_tps / p_tps
    print(f"throughput ratio (streaming / plain): {ratio:.3f}  (target >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
