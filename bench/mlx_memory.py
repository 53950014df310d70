"""MLX's training memory, measured, beside tui-tuner's MLX estimate (`estimate_memory(..., backend="mlx")`).

    pip install -e ".[mlx]" && PYTHONPATH=. python bench/mlx_memory.py [--hidden 512 --layers 8 --seq 256]

Builds a Llama-architecture model with random 16-bit weights in mlx-lm (no download), for LoRA on the
16-bit weights and for QLoRA on mlx-lm's 4-bit affine quantization (group 64), puts LoRA (r 16) on every
linear layer as mlx-lm does, and trains a few AdamW steps on random tokens with mlx-lm's own loss, as
mlx-lm's trainer does without gradient checkpointing. MLX's peak memory counter (`mx.get_peak_memory`)
is read after the steps and printed beside the estimate for the same architecture and settings, with
their ratio. On Linux this runs MLX's CPU build, whose allocator counts the same arrays Metal would hold,
except that its loss is unfused (one more logits-sized array, added to the estimate for the comparison);
on a Mac it measures the GPU's. MLX's CPU build is slow in bfloat16 (its matmuls there also make fp32
copies of the weights): `--dtype float32` measures the same terms in 4-byte units, quickly.
"""

from __future__ import annotations

import argparse


def measure(method: str, args: argparse.Namespace) -> int:
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    from mlx.utils import tree_map
    from mlx_lm.models.llama import Model, ModelArgs
    from mlx_lm.tuner.trainer import default_loss
    from mlx_lm.tuner.utils import linear_to_lora_layers

    mx.random.seed(0)
    model = Model(ModelArgs(model_type="llama", hidden_size=args.hidden, num_hidden_layers=args.layers,
                            intermediate_size=args.intermediate, num_attention_heads=args.heads,
                            num_key_value_heads=args.kv_heads, rms_norm_eps=1e-5, vocab_size=args.vocab,
                            tie_word_embeddings=False))
    model.update(tree_map(lambda p: p.astype(getattr(mx, args.dtype)), model.parameters()))
    if method == "qlora":
        nn.quantize(model, group_size=64, bits=4)
    mx.eval(model.parameters())
    model.freeze()
    linear_to_lora_layers(model, args.layers, {"rank": args.r, "scale": 2.0, "dropout": 0.0})
    optimizer = optim.AdamW(learning_rate=1e-4)
    loss_and_grad = nn.value_and_grad(model, default_loss)
    batch = mx.random.randint(0, args.vocab, (args.batch, args.seq + 1))
    lengths = mx.array([[0, args.seq]] * args.batch)
    mx.reset_peak_memory()
    for _ in range(args.steps):
        (loss, _), grads = loss_and_grad(model, batch, lengths)
        optimizer.update(model, grads)
        mx.eval(loss, model.parameters(), optimizer.state)
    return int(mx.get_peak_memory())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--intermediate", type=int, default=1408)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--r", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16",
                   help="float32 is much faster on MLX's CPU build (its bf16 matmuls are slow there)")
    p.add_argument("--methods", default="lora,qlora")
    args = p.parse_args()

    from tui_tuner.core.units import format_bytes
    from tui_tuner.fit.estimate import estimate_memory
    from tui_tuner.models.spec import spec_from_config

    spec = spec_from_config({"model_type": "llama", "hidden_size": args.hidden, "num_hidden_layers": args.layers,
                             "intermediate_size": args.intermediate, "num_attention_heads": args.heads,
                             "num_key_value_heads": args.kv_heads, "vocab_size": args.vocab,
                             "tie_word_embeddings": False, "max_position_embeddings": 4096}, "bench-llama")
    print(f"{spec.describe()}; batch {args.batch} x seq {args.seq}, LoRA r {args.r} on all linear layers, "
          f"no gradient checkpointing, {args.steps} AdamW steps")
    import mlx.core as mx

    # MLX's CPU build computes the cross-entropy unfused and keeps one more logits-sized array than the
    # Mac GPU's fused kernel, which the estimate models: add it when measuring on the CPU.
    on_cpu = mx.default_device() != mx.gpu
    act_bytes = 4 if args.dtype == "float32" else 2
    extra = args.batch * args.seq * args.vocab * act_bytes if on_cpu else 0
    print(f"device {mx.default_device()}; {'CPU: + one logits copy (unfused loss) = ' + format_bytes(extra) if on_cpu else ''}")
    print(f"{'method':<7} {'measured peak':>14} {'MLX estimate':>13} {'same device':>12} {'estimate/measured':>18}")
    for method in args.methods.split(","):
        peak = measure(method, args)
        est = estimate_memory(spec, method, backend="mlx", seq_len=args.seq, batch_size=args.batch, lora_r=args.r,
                              target_modules="all-linear", gradient_checkpointing=False, lora_dropout=0.0,
                              dtype=args.dtype)
        here = est.total_bytes + extra
        print(f"{method:<7} {format_bytes(peak):>14} {format_bytes(est.total_bytes):>13} {format_bytes(here):>12} "
              f"{here / peak:>18.2f}")


if __name__ == "__main__":
    main()
