"""Training-memory estimate and method recommendation: "does this model fit my GPU, and how?"

Arithmetic over a `ModelSpec` (no torch): weights by precision, trainable parameters, their
gradients and optimizer states, activations (with and without gradient checkpointing, per
backend), logits, and the CUDA context. Each term is an `EstimateLine` with a sentence a
learner understands. Formulas and the published measurements they are checked against are
in docs/memory-estimate.md.

    python -c "from tui_tuner.models.spec import model_spec; from tui_tuner.fit.estimate import *; \\
               print(estimate_memory(model_spec('meta-llama/Llama-3.1-8B'), 'qlora').table_text())"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Literal

from tui_tuner.core.units import format_bytes, format_count
from tui_tuner.fit.lora import lora_params, spec_target_modules
from tui_tuner.fit.quant import quantized_bytes
from tui_tuner.models.spec import ModelSpec, linear_modules

if TYPE_CHECKING:
    from tui_tuner.config.schema import RunConfig

Method = Literal["full", "lora", "qlora"]
Backend = Literal["transformers", "unsloth", "mlx"]
METHODS: tuple[str, ...] = ("full", "lora", "qlora")
BACKENDS: tuple[str, ...] = ("transformers", "unsloth", "mlx")

GIB = 1024**3
"""GPU memory is quoted in binary units (GiB, 2**30 bytes), as nvidia-smi and nvitop do: a "24 GB" card is 24 GiB."""

CUDA_CONTEXT_BYTES = 500 * 1024**2
"""CUDA driver context + cuBLAS/cuDNN workspaces that PyTorch holds outside its allocator (~0.3-0.6 GiB)."""
ALLOCATOR_OVERHEAD = 0.02
"""The caching allocator reserves more than the live tensors (block rounding, fragmentation)."""
LOGITS_BYTES_PER_VOCAB = 16
"""Per token and vocabulary entry: bf16 logits (2), their fp32 copy (4), fp32 log-softmax (4), fp32 and bf16 gradients (4 + 2)."""

# bytes of optimizer state per trainable parameter, by optimizer, for fp32 / 16-bit parameters
_OPTIMIZER_STATE_BYTES = {
    "adamw_torch": (8.0, 4.0),        # two moments in the parameter's dtype
    "paged_adamw_32bit": (8.0, 8.0),  # fp32 moments, paged to CPU under memory pressure
    "adamw_8bit": (2.0, 2.0),         # two 8-bit moments (block-wise quantized, bitsandbytes)
    "paged_adamw_8bit": (2.0, 2.0),
    "adafactor": (0.0, 0.0),          # factored second moment: computed from shapes below
    "sgd": (0.0, 0.0),                # plain SGD keeps no state (no momentum in the Trainer's default)
}
OPTIMIZERS = tuple(_OPTIMIZER_STATE_BYTES)

MLX_GROUP_SIZE = 64
"""MLX's affine quantization (mlx_lm's default for 4 bits): one scale and one bias per 64 weights."""
MLX_4BIT_BYTES_PER_WEIGHT = 0.5
"""4-bit codes, packed eight to a 32-bit word: half a byte per weight."""
MLX_GROUP_CONSTANTS = 2
"""Each group keeps a scale and a bias in the weights' dtype: with 16-bit weights 4 bytes per 64 weights
(0.5 bits per weight)."""
MLX_LOGITS_COPIES = 3
"""Arrays of the logits' size (in the activations' dtype) alive at the loss on a Mac's GPU: the logits, the
softmax that MLX's fused cross-entropy (`mx.fast.cross_entropy`) forms for the backward pass, and the logits'
gradient; mlx-lm makes no fp32 copy. (MLX's CPU build computes the loss unfused and holds four: measured
with bench/mlx_memory.py.)"""

_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "auto": 2}


@dataclass
class EstimateLine:
    """One term of the breakdown: what it is, how many bytes, and why."""

    name: str
    bytes: int
    explanation: str
    key: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "bytes": self.bytes, "gb": round(self.bytes / GIB, 3),
                "explanation": self.explanation}


@dataclass
class MemoryEstimate:
    """Peak GPU memory of one training configuration, term by term."""

    model: str
    method: str
    backend: str
    settings: dict[str, Any]
    lines: list[EstimateLine]
    trainable_params: int
    total_params: int
    cpu_bytes: int = 0
    """Host RAM the backend moves off the GPU (Unsloth's offloaded checkpoints)."""
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        """Everything the GPU must hold at the peak: tensors, allocator slack and CUDA context."""
        return sum(line.bytes for line in self.lines)

    @property
    def tensor_bytes(self) -> int:
        """The peak of live tensors (what `torch.cuda.max_memory_allocated` reports)."""
        return sum(line.bytes for line in self.lines if line.key not in ("cuda_context", "allocator"))

    def line(self, key: str) -> EstimateLine | None:
        return next((line for line in self.lines if line.key == key), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "method": self.method, "backend": self.backend, "settings": self.settings,
            "total_bytes": self.total_bytes, "total_gb": round(self.total_bytes / GIB, 2),
            "tensor_bytes": self.tensor_bytes, "trainable_params": self.trainable_params,
            "total_params": self.total_params, "cpu_bytes": self.cpu_bytes,
            "lines": [line.as_dict() for line in self.lines], "notes": self.notes,
        }

    def table_text(self) -> str:
        """Plain-text breakdown (for logs and docs)."""
        rows = [f"{line.name:<34} {format_bytes(line.bytes):>9}  {line.explanation}" for line in self.lines]
        rows.append(f"{'total':<34} {format_bytes(self.total_bytes):>9}")
        return "\n".join(rows)


# ---------------------------------------------------------------------------- activations


def layer_activation_bytes_per_token(spec: ModelSpec, *, method: str = "lora", adapted: Iterable[str] = (),
                                     dropout: float = 0.0, act_bytes: int = 2, fused_norms: bool = False) -> int:
    """Bytes one decoder block holds for its backward pass, per token (16-bit activations, SDPA attention).

    The inventory: the two RMSNorms keep their fp32 input; attention keeps q, k, v and its
    output (fused SDPA/FlashAttention never stores the seq x seq scores); the gated MLP keeps
    gate, up and the activation. A frozen linear layer needs no saved input, but a LoRA branch
    (or a trainable weight) does: the normed inputs, the MLP product, and with dropout > 0 a
    dropped-out copy plus mask per adapted module (peft applies dropout per module). During
    the backward pass the gradients of gate and up are live together. `fused_norms`: Unsloth's
    RMSNorm kernel keeps its 16-bit input instead of an fp32 copy.
    """
    h, q, kv, i = spec.hidden_size, spec.q_dim, spec.kv_dim, spec.intermediate_size
    b = act_bytes
    full = method == "full"
    modules = linear_modules(spec)
    adapted = [m for m in adapted if m in modules]
    n = 2 * (b if fused_norms else 4) * h  # inputs of the two norms (fp32 copies unless a fused kernel)
    n += b * (q + 2 * kv) + b * q  # q, k, v and the attention output (also o_proj's input)
    n += (3 if spec.gated_mlp else 1) * b * i  # gate, up, activation (fc1 output for non-gated)
    attn_in = {"q_proj", "k_proj", "v_proj", "qkv_proj"}
    mlp_in = {"gate_proj", "up_proj", "gate_up_proj"}
    if full:
        n += 2 * b * h + b * i  # inputs of every trainable matrix: both normed tensors and the MLP product
    elif dropout > 0:
        n += sum(modules[m][0] for m in adapted if m != "o_proj") * (b + 1)
        n += (b + 1) * q if "o_proj" in adapted else 0
    else:
        n += b * h if attn_in & set(adapted) else 0
        n += b * h if mlp_in & set(adapted) else 0
        n += b * i if "down_proj" in adapted else 0
    n += 2 * b * i  # backward transient: d(gate) and d(up)
    return n


# ---------------------------------------------------------------------------- the estimate


def estimate_memory(
    spec: ModelSpec,
    method: str = "lora",
    *,
    seq_len: int = 1024,
    batch_size: int = 2,
    lora_r: int = 16,
    target_modules: str | Iterable[str] = "all-linear",
    gradient_checkpointing: bool = True,
    optimizer: str = "adamw_torch",
    dtype: str = "bfloat16",
    backend: str = "transformers",
    double_quant: bool = True,
    lora_dropout: float = 0.05,
    upcast_unquantized: bool = False,
    on_gpu: bool = True,
    objective: str = "sft",
    num_generations: int = 8,
    generation_batch: int | None = None,
    max_completion_length: int = 256,
    kl_beta: float = 0.0,
) -> MemoryEstimate:
    """Peak GPU memory of fine-tuning `spec` with `method` on one GPU, as a breakdown.

    `upcast_unquantized`: peft's `prepare_model_for_kbit_training` (called by older TRL and
    many scripts for QLoRA) casts embeddings, LM head and norms to fp32. `on_gpu=False`
    leaves out the CUDA context.
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r}: choose one of {', '.join(METHODS)}")
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if optimizer not in _OPTIMIZER_STATE_BYTES:
        raise ValueError(f"optimizer {optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
    if seq_len < 1 or batch_size < 1:
        raise ValueError("seq_len and batch_size must be at least 1")
    notes: list[str] = []
    wbytes = _DTYPE_BYTES.get(dtype, 2)
    act_bytes = 4 if dtype == "float32" else 2
    unsloth = backend == "unsloth"
    mlx = backend == "mlx"
    if mlx and optimizer in ("adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit"):
        notes.append(f"MLX has no {optimizer}: its AdamW keeps both moments in the adapter's fp32, as estimated here.")
        optimizer = "adamw_torch"
    if unsloth:
        gradient_checkpointing = True  # Unsloth always trains with its offloaded checkpointing
    # Pair objectives run chosen and rejected (KTO: the answer and a mismatched one for its KL
    # estimate) as one batch of twice the rows; GRPO trains on prompt + generated completion rows.
    rows = batch_size * (2 if objective in ("dpo", "orpo", "kto", "reward") else 1)
    tokens = seq_len * rows
    lines: list[EstimateLine] = []
    total_params = spec.param_count

    def add(key: str, name: str, n: float, why: str) -> None:
        lines.append(EstimateLine(name, int(round(n)), why, key))

    # --- weights
    if method == "qlora" and mlx:
        # mlx_lm quantizes every Linear and Embedding whose input width is a multiple of the group size:
        # the embeddings and an untied LM head too, unlike bitsandbytes.
        q = spec.linear_params + spec.embedding_params + spec.lm_head_params
        add("weights", "base weights, MLX 4-bit affine", q * MLX_4BIT_BYTES_PER_WEIGHT,
            f"{format_count(q)} weights of the linear layers and embeddings in MLX's 4-bit affine format "
            "(not NF4): two per byte.")
        bits = 8 * wbytes
        add("quant_constants", "scales and biases (group 64)", q / MLX_GROUP_SIZE * MLX_GROUP_CONSTANTS * wbytes,
            f"a {bits}-bit scale and a {bits}-bit bias per {MLX_GROUP_SIZE} weights: {2 * bits / MLX_GROUP_SIZE:g} "
            f"bits per weight (about {4 + 2 * bits / MLX_GROUP_SIZE:g} bits per weight in all).")
        u = spec.final_norm_params + spec.num_layers * spec.layer_other_params()
        add("weights_unquantized", "unquantized layers", u * wbytes,
            f"the norms and biases ({format_count(u)}) stay in {'32' if wbytes == 4 else '16'}-bit.")
    elif method == "qlora":
        q = spec.linear_params
        codes, const = quantized_bytes(((i, o, spec.num_layers) for i, o in linear_modules(spec).values()),
                                       "nf4-dq" if double_quant else "nf4")
        add("weights", "base weights, 4-bit NF4", codes,
            f"{format_count(q)} weights of the linear layers, stored as 4-bit NormalFloat: two per byte.")
        if double_quant:
            why = ("one scale per 64 weights, itself quantized to 8 bit (double quantization): "
                   "~0.127 bits per weight.")
        else:
            why = "one fp32 scale per 64 weights: 0.5 bits per weight (double quantization would cut it to ~0.13)."
        add("quant_constants", "quantization constants", const, why)
        u = spec.unquantized_params
        ub = 4 if upcast_unquantized or dtype == "float32" else wbytes
        why = (f"embeddings, LM head and norms ({format_count(u)}) are not quantized; they stay in "
               f"{'32' if ub == 4 else '16'}-bit")
        why += " (prepare_model_for_kbit_training upcasts them)." if upcast_unquantized else "."
        add("weights_unquantized", "unquantized layers", u * ub, why)
    else:
        add("weights", f"base weights, {'32' if wbytes == 4 else '16'}-bit", total_params * wbytes,
            f"{format_count(total_params)} parameters x {wbytes} bytes"
            + ("." if method == "full" else ", frozen: LoRA never changes them."))

    # --- trainable parameters, gradients, optimizer
    chosen: list[str] = []
    if method == "full":
        trainable = total_params
        tbytes = wbytes
        add("gradients", "gradients", trainable * tbytes,
            "full fine-tuning keeps a gradient for every weight, in the weights' precision.")
    else:
        match = spec_target_modules(spec, target_modules)
        chosen = match.names
        if match.unmatched:
            notes.append(f"target modules not in {spec.name}: {', '.join(match.unmatched)} (PEFT matches no "
                         f"layer for them, so they add nothing). {match.hint}")
        trainable = lora_params(spec, lora_r, chosen)
        tbytes = 4  # peft keeps adapter weights in fp32 (autocast_adapter_dtype=True); so does mlx_lm's LoRALinear
        add("adapter", f"LoRA adapter (r={lora_r})", trainable * tbytes,
            f"{format_count(trainable)} trainable weights in A and B matrices on {len(chosen)} modules per layer, fp32.")
        add("gradients", "adapter gradients", trainable * tbytes,
            "only the adapter gets gradients: the frozen base needs none.")
    state = _optimizer_state_bytes(spec, method, optimizer, trainable, tbytes, lora_r, chosen)
    shown_optimizer = "AdamW" if mlx and optimizer == "adamw_torch" else optimizer
    add("optimizer", f"optimizer states ({shown_optimizer})", state, _optimizer_why(optimizer, method, trainable))

    # --- activations
    # MLX's fused RMSNorm (mx.fast.rms_norm) keeps its 16-bit input, as Unsloth's kernel does.
    a_layer = layer_activation_bytes_per_token(spec, method=method, adapted=chosen, dropout=lora_dropout,
                                               act_bytes=act_bytes, fused_norms=unsloth or mlx)
    if unsloth:
        act = a_layer * tokens
        cpu = spec.num_layers * act_bytes * spec.hidden_size * tokens
        add("activations", "activations (1 layer live)", act,
            f"Unsloth offloads each layer's checkpoint to CPU RAM ({format_bytes(cpu)}) and recomputes one "
            f"layer at a time: {batch_size} x {seq_len} tokens x one layer's saved tensors.")
    else:
        cpu = 0
        if gradient_checkpointing:
            ckpt = spec.num_layers * act_bytes * spec.hidden_size * tokens
            add("checkpoints", "checkpointed layer inputs", ckpt,
                f"gradient checkpointing keeps only each layer's input ({spec.num_layers} layers x "
                f"{batch_size} x {seq_len} tokens x hidden {spec.hidden_size}).")
            add("activations", "activations (1 layer recomputed)", a_layer * tokens,
                "in the backward pass one layer at a time is recomputed, so only its activations are live.")
        else:
            add("activations", f"activations ({spec.num_layers} layers)", spec.num_layers * a_layer * tokens,
                f"every layer keeps its intermediate tensors for the backward pass: {batch_size} x {seq_len} "
                f"tokens x {spec.num_layers} layers. Gradient checkpointing would cut this to about "
                f"{format_bytes((spec.num_layers * act_bytes * spec.hidden_size + a_layer) * tokens)}.")

    # --- the objective's own terms: a reference model, generations
    has_reference = objective in ("dpo", "kto") or (objective == "grpo" and kl_beta > 0)
    if has_reference and method == "full":
        add("reference", "reference model (frozen copy)", total_params * wbytes,
            f"{objective.upper()} compares the model with its starting point: full fine-tuning keeps a second, "
            f"frozen copy of all {format_count(total_params)} weights (no gradients, no optimizer states).")
    elif has_reference:
        add("reference", "reference adapter (frozen copy)", trainable * tbytes,
            f"with {method.upper() if method == 'qlora' else 'LoRA'} the reference is the starting adapter kept "
            "frozen in the same model (adapter-disabled base for a fresh one): only the adapter is copied, "
            "never the base weights.")
    if objective == "grpo":
        gen = generation_batch or batch_size
        kv_len = seq_len  # prompt + completion, cut at model.max_seq_length
        kv = 2 * spec.num_layers * spec.kv_dim * act_bytes * gen * kv_len
        add("kv_cache", f"generation KV cache ({gen} completions)", kv,
            f"sampling keeps keys and values of every layer for {gen} sequences (the {num_generations} completions "
            f"per prompt, generated together) of up to {kv_len} tokens (prompt + max_completion_length "
            f"{max_completion_length}): 2 x {spec.num_layers} layers x {spec.kv_dim} x {act_bytes} bytes per token.")
        add("gen_logits", "generation logits", gen * spec.vocab_size * 4,
            "each sampling step scores the whole vocabulary once per sequence (fp32 for the softmax).")

    # --- logits and loss
    if mlx:
        add("logits", "logits and loss", tokens * spec.vocab_size * MLX_LOGITS_COPIES * act_bytes,
            f"one {8 * act_bytes}-bit score per vocabulary entry ({spec.vocab_size:,}) per token, the softmax of "
            "MLX's fused cross-entropy and the logits' gradient: no fp32 copy.")
    elif unsloth:
        add("logits", "logits and loss", tokens * spec.hidden_size * act_bytes,
            "Unsloth computes the loss in chunks (Cut Cross Entropy): the full logits are never stored.")
    else:
        add("logits", "logits and loss", tokens * spec.vocab_size * LOGITS_BYTES_PER_VOCAB,
            f"one score per vocabulary entry ({spec.vocab_size:,}) per token, kept in 16 and 32 bit with "
            "its gradient: large vocabularies make this big.")

    # --- transient buffers
    biggest = max(i * o for i, o in linear_modules(spec).values())
    if method == "qlora" and not mlx:  # MLX's quantized_matmul reads the packed 4-bit weights directly
        add("dequant", "dequantization buffer", biggest * act_bytes * 2,
            "each 4-bit matrix is expanded to 16 bit just before its matmul (forward and backward).")

    tensors = sum(line.bytes for line in lines)
    if mlx:
        add("allocator", "buffer cache slack", tensors * ALLOCATOR_OVERHEAD,
            "MLX keeps freed Metal buffers in a cache for reuse, holding a few percent more than the live arrays.")
    else:
        add("allocator", "allocator slack", tensors * ALLOCATOR_OVERHEAD,
            "PyTorch's caching allocator rounds and fragments blocks, reserving a few percent more than the live "
            "tensors.")
    if on_gpu and not mlx:  # no CUDA context on a Mac; Metal's own buffers are outside the working set
        add("cuda_context", "CUDA context", CUDA_CONTEXT_BYTES,
            "the CUDA driver and cuBLAS workspaces, held outside PyTorch's allocator.")

    settings = {
        "seq_len": seq_len, "batch_size": batch_size, "lora_r": lora_r if method != "full" else None,
        "target_modules": (target_modules if isinstance(target_modules, str) else list(target_modules))
        if method != "full" else None,
        "gradient_checkpointing": gradient_checkpointing, "optimizer": optimizer, "dtype": dtype,
        "double_quant": double_quant if method == "qlora" else None, "lora_dropout": lora_dropout,
        "objective": objective,
    }
    if objective in ("dpo", "orpo", "kto", "reward"):
        notes.append(f"{objective}: activations and logits are for {rows} sequences per step "
                     f"({'chosen + rejected' if objective != 'kto' else 'answer + KL answer'} for each of {batch_size}).")
    if objective == "grpo":
        settings.update(num_generations=num_generations, max_completion_length=max_completion_length)
    return MemoryEstimate(spec.name, method, backend, settings, lines, trainable, total_params, cpu, notes)


def _optimizer_state_bytes(spec: ModelSpec, method: str, optimizer: str, trainable: int, tbytes: int,
                           r: int, chosen: list[str]) -> float:
    if optimizer == "adafactor":
        # factored second moment: one row and one column vector per matrix, fp32
        modules = linear_modules(spec)
        if method == "full":
            matrices = spec.num_layers * sum(i + o for i, o in modules.values())
            matrices += (1 if spec.tie_embeddings else 2) * (spec.vocab_size + spec.hidden_size)
            vectors = spec.num_layers * spec.layer_other_params() + spec.final_norm_params  # kept whole
            return 4 * (matrices + vectors)
        return 4 * spec.num_layers * sum((modules[m][0] + r) + (r + modules[m][1]) for m in chosen)
    fp32_bytes, half_bytes = _OPTIMIZER_STATE_BYTES[optimizer]
    return trainable * (fp32_bytes if tbytes == 4 else half_bytes)


def _optimizer_why(optimizer: str, method: str, trainable: int) -> str:
    what = f"{format_count(trainable)} trainable weights"
    return {
        "adamw_torch": f"AdamW keeps two running averages (momentum and variance) for each of the {what}.",
        "paged_adamw_32bit": f"AdamW's two fp32 averages for the {what}; paged to CPU RAM when the GPU runs short.",
        "adamw_8bit": f"8-bit AdamW stores the two averages in 1 byte each for the {what}.",
        "paged_adamw_8bit": f"8-bit AdamW (1 byte per average) for the {what}, paged to CPU RAM under pressure.",
        "adafactor": "Adafactor keeps one row and one column average per matrix instead of a value per weight.",
        "sgd": "plain SGD keeps no optimizer state.",
    }[optimizer]


def estimate_for_config(cfg: "RunConfig", spec: ModelSpec | None = None, *, backend: str | None = None,
                        on_gpu: bool = True) -> MemoryEstimate:
    """The estimate for a validated run config (the model's spec is looked up when not given)."""
    from tui_tuner.models.spec import model_spec

    spec = spec or model_spec(cfg.model.name_or_path, cfg.model.revision)
    chosen_backend = backend or (cfg.backend if cfg.backend in ("unsloth", "mlx") else "transformers")
    dtype = cfg.model.dtype if cfg.model.dtype != "auto" else ("bfloat16" if on_gpu else "float32")
    return estimate_memory(
        spec, cfg.method, seq_len=cfg.model.max_seq_length, batch_size=cfg.training.batch_size,
        lora_r=cfg.lora.r, target_modules=cfg.lora.target_modules,
        gradient_checkpointing=cfg.training.gradient_checkpointing, optimizer=cfg.training.optimizer,
        dtype=dtype, backend=chosen_backend, double_quant=cfg.quantization.double_quant,
        lora_dropout=cfg.lora.dropout, on_gpu=on_gpu, objective=cfg.objective,
        num_generations=cfg.grpo.num_generations,
        generation_batch=cfg.training.batch_size * cfg.training.grad_accumulation,
        max_completion_length=cfg.grpo.max_completion_length, kl_beta=cfg.grpo.beta,
    )


# ---------------------------------------------------------------------------- GPUs and fit


@dataclass(frozen=True)
class GpuModel:
    """A common GPU: its name and usable memory."""

    name: str
    memory_bytes: int
    aliases: tuple[str, ...] = ()
    bf16: bool = True


COMMON_GPUS: tuple[GpuModel, ...] = (
    GpuModel("Tesla T4", 16 * GIB, ("t4",), bf16=False),
    GpuModel("RTX 3060", 12 * GIB, ("3060", "rtx3060")),
    GpuModel("RTX 3090", 24 * GIB, ("3090", "rtx3090")),
    GpuModel("RTX 4090", 24 * GIB, ("4090", "rtx4090")),
    GpuModel("A10G", 24 * GIB, ("a10g", "a10")),
    GpuModel("L4", 24 * GIB, ("l4",)),
    GpuModel("A100 40GB", 40 * GIB, ("a100-40", "a100-40gb", "a100")),
    GpuModel("A100 80GB", 80 * GIB, ("a100-80", "a100-80gb")),
    GpuModel("H100 80GB", 80 * GIB, ("h100", "h100-80", "h100-80gb")),
)
"""Cards people rent or own, with the memory they report (GiB, as nvidia-smi shows it)."""


def find_gpu(name: str) -> GpuModel | None:
    """A common GPU by name or alias, case- and punctuation-insensitive (`4090`, `A100-80`, `t4`)."""
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    for gpu in COMMON_GPUS:
        names = [gpu.name, *gpu.aliases]
        if any("".join(ch for ch in n.lower() if ch.isalnum()) == key for n in names):
            return gpu
    return None


@dataclass
class MethodFit:
    """How one method/backend fits a GPU."""

    method: str
    backend: str
    estimate: MemoryEstimate
    vram_bytes: int
    max_batch_size: int = 0
    max_seq_len: int = 0

    @property
    def needed_bytes(self) -> int:
        return self.estimate.total_bytes

    @property
    def fits(self) -> bool:
        return self.needed_bytes <= self.vram_bytes

    @property
    def headroom_bytes(self) -> int:
        return self.vram_bytes - self.needed_bytes

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "backend": self.backend, "needed_bytes": self.needed_bytes,
                "needed_gb": round(self.needed_bytes / GIB, 2), "fits": self.fits,
                "headroom_bytes": self.headroom_bytes, "max_batch_size": self.max_batch_size,
                "max_seq_len": self.max_seq_len, "estimate": self.estimate.as_dict()}


@dataclass
class Recommendation:
    """Which methods fit a GPU, the one to use and why."""

    model: str
    vram_bytes: int
    gpu_name: str
    fits: list[MethodFit]
    recommended: MethodFit | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "gpu": self.gpu_name, "vram_bytes": self.vram_bytes,
                "vram_gb": round(self.vram_bytes / GIB, 2),
                "recommended": None if self.recommended is None else
                {"method": self.recommended.method, "backend": self.recommended.backend,
                 "max_batch_size": self.recommended.max_batch_size,
                 "max_seq_len": self.recommended.max_seq_len},
                "reason": self.reason, "options": [f.as_dict() for f in self.fits]}


_METHOD_LABEL = {"full": "full fine-tuning", "lora": "LoRA", "qlora": "QLoRA"}


def _largest(fits_at, hi: int) -> int:
    """Largest n in [1, hi] with fits_at(n) true (fits_at is monotone); 0 when even 1 fails."""
    if not fits_at(1):
        return 0
    lo, n = 1, 1
    while n < hi and fits_at(min(n * 2, hi)):
        lo = n = min(n * 2, hi)
    if n >= hi:
        return hi
    top = min(n * 2, hi)
    while lo + 1 < top:
        mid = (lo + top) // 2
        if fits_at(mid):
            lo = mid
        else:
            top = mid
    return lo


def max_batch_size(spec: ModelSpec, vram_bytes: int, method: str, *, limit: int = 1024, **kw: Any) -> int:
    """The largest per-device batch that fits in `vram_bytes` (0 if none)."""
    kw.pop("batch_size", None)
    return _largest(lambda b: estimate_memory(spec, method, batch_size=b, **kw).total_bytes <= vram_bytes, limit)


def max_seq_len(spec: ModelSpec, vram_bytes: int, method: str, *, step: int = 128, **kw: Any) -> int:
    """The longest sequence (a multiple of `step`, up to the model's context) that fits at the given batch."""
    kw.pop("seq_len", None)
    limit = (spec.max_position_embeddings or 131072) // step
    n = _largest(lambda k: estimate_memory(spec, method, seq_len=k * step, **kw).total_bytes <= vram_bytes, limit)
    return n * step


def recommend(
    spec: ModelSpec,
    vram_bytes: int,
    *,
    gpu_name: str = "",
    backend: str = "transformers",
    methods: Iterable[str] = METHODS,
    **settings: Any,
) -> Recommendation:
    """Which methods fit `vram_bytes`, the recommended one and a sentence saying why.

    Preference: LoRA when it fits (same quality as full fine-tuning on most tasks, faster
    than QLoRA), else QLoRA; full fine-tuning is reported but recommended only when it fits
    and LoRA is not among `methods`. `settings` are `estimate_memory`'s keyword arguments.
    """
    gpu_label = gpu_name or "your GPU"
    fits: list[MethodFit] = []
    for method in methods:
        est = estimate_memory(spec, method, backend=backend, **settings)
        fit = MethodFit(method, backend, est, vram_bytes)
        if fit.fits or method != "full":
            fit.max_batch_size = max_batch_size(spec, vram_bytes, method, backend=backend, **settings)
            fit.max_seq_len = max_seq_len(spec, vram_bytes, method, backend=backend, **settings)
        fits.append(fit)
    by = {f.method: f for f in fits}
    vram = format_bytes(vram_bytes)
    order = [m for m in ("lora", "qlora", "full") if m in by]
    chosen = next((by[m] for m in order if by[m].fits), None)
    if chosen is None:
        smallest = min(fits, key=lambda f: f.needed_bytes)
        at_batch_1 = max_seq_len(spec, vram_bytes, smallest.method, backend=backend,
                                 **{**settings, "batch_size": 1})
        reason = (f"Nothing fits in {vram}: {_METHOD_LABEL[smallest.method]} needs "
                  f"{format_bytes(smallest.needed_bytes)}. ")
        if at_batch_1:
            reason += (f"{_METHOD_LABEL[smallest.method]} would fit at batch 1 with up to {at_batch_1:,} tokens "
                       "per example; lower the batch size or max_seq_length, or pick a smaller model or a "
                       "bigger GPU.")
        else:
            reason += "Pick a smaller model or a bigger GPU."
        return Recommendation(spec.name, vram_bytes, gpu_label, fits, None, reason)
    parts = [f"{_METHOD_LABEL[chosen.method]} needs {format_bytes(chosen.needed_bytes)} of your {vram}: fits"]
    if chosen.method == "lora" and "qlora" in by and by["qlora"].fits:
        q = by["qlora"]
        parts.append(f"QLoRA would need {format_bytes(q.needed_bytes)} and leave room for batch {q.max_batch_size}")
    elif chosen.method == "qlora" and "lora" in by:
        parts[0] += f" (LoRA would need {format_bytes(by['lora'].needed_bytes)})"
    if "full" in by and chosen.method != "full":
        f = by["full"]
        parts.append(f"full fine-tuning {'would also fit' if f.fits else 'would not'} ({format_bytes(f.needed_bytes)})")
    reason = "; ".join(parts) + "."
    reason += (f" Largest batch for {_METHOD_LABEL[chosen.method]}: {chosen.max_batch_size}; longest sequence at "
               f"batch {settings.get('batch_size', 2)}: {chosen.max_seq_len:,} tokens.")
    return Recommendation(spec.name, vram_bytes, gpu_label, fits, chosen, reason)
