"""Load a model for training with transformers + peft (+ bitsandbytes 4-bit for QLoRA).

lora: frozen 16/32-bit weights + a LoRA adapter; qlora: NF4/FP4 4-bit weights (double
quant optional) + adapter, prepared with `prepare_model_for_kbit_training`; full: every
weight trains. bitsandbytes 4-bit also runs on CPU, so QLoRA works without a GPU (slowly).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tui_tuner.config.schema import RunConfig

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def weight_dtype(cfg: "RunConfig", device: str):
    """The torch dtype of the (unquantized) weights: `auto` is bf16/fp16 on CUDA, float32 on CPU."""
    import torch

    name = cfg.model.dtype
    if name == "auto":
        if device == "cuda":
            from tui_tuner.fit.cuda import bf16_supported

            return torch.bfloat16 if bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, DTYPES[name])


def compute_dtype(cfg: "RunConfig", device: str):
    """The dtype 4-bit weights are dequantized to for matmuls."""
    import torch

    name = cfg.quantization.compute_dtype
    if name == "auto":
        return weight_dtype(cfg, device)
    return getattr(torch, DTYPES[name])


def mixed_precision(cfg: "RunConfig", device: str) -> str:
    """The trainer's autocast: "bf16", "fp16" or "fp32" (always fp32 on the CPU).

    QLoRA follows the compute dtype the 4-bit weights are dequantized to: after peft's
    `prepare_model_for_kbit_training` the first floating parameter is an fp32 embedding, so
    the weights' dtype would say fp32 and leave activations in fp32 (twice the memory).
    """
    import torch

    if device != "cuda":
        return "fp32"
    dtype = compute_dtype(cfg, device) if cfg.method == "qlora" else weight_dtype(cfg, device)
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def lora_config(cfg: "RunConfig"):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules, use_rslora=cfg.lora.use_rslora, bias=cfg.lora.bias,
        task_type="CAUSAL_LM",
    )


def load_tokenizer(cfg: "RunConfig", model_path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path, revision=cfg.model.revision,
                                        trust_remote_code=cfg.model.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(cfg: "RunConfig", model_path: str, device: str) -> tuple[Any, Any]:
    """(model ready to train, tokenizer) for `cfg.method` on `device` ("cuda" or "cpu")."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(cfg, model_path)
    kwargs: dict[str, Any] = {"revision": cfg.model.revision, "trust_remote_code": cfg.model.trust_remote_code}
    if cfg.method == "qlora":
        from transformers import BitsAndBytesConfig

        cdtype = compute_dtype(cfg, device)
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=cfg.quantization.quant_type,
            bnb_4bit_use_double_quant=cfg.quantization.double_quant, bnb_4bit_compute_dtype=cdtype,
            bnb_4bit_quant_storage=cdtype,
        )
        kwargs["dtype"] = cdtype
        kwargs["device_map"] = {"": torch.cuda.current_device() if device == "cuda" else "cpu"}
    else:
        kwargs["dtype"] = weight_dtype(cfg, device)
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    model.config.use_cache = False  # the KV cache is useless in training and conflicts with checkpointing
    if cfg.method == "full":
        return model, tokenizer

    from peft import get_peft_model, prepare_model_for_kbit_training

    if cfg.method == "qlora":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.training.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False})
    elif cfg.training.gradient_checkpointing:
        # Frozen embeddings give checkpointed blocks inputs without grad; this keeps the adapter's grads flowing.
        model.enable_input_require_grads()
    model = get_peft_model(model, lora_config(cfg))
    return model, tokenizer
