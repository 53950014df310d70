"""Load a model for training with Unsloth (NVIDIA GPU only): faster kernels, less memory.

`unsloth` must be imported before transformers, trl and peft (it patches them); the
worker's `select_backend` does that before anything else. The model it returns trains
with the same trl `SFTTrainer`, callback and run directory as the transformers backend,
and saves a standard PEFT adapter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tui_tuner.train.backends.transformers_backend import weight_dtype

if TYPE_CHECKING:
    from tui_tuner.config.schema import RunConfig

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
"""What `all-linear` means for the decoder architectures Unsloth supports."""


def load_model(cfg: "RunConfig", model_path: str, device: str) -> tuple[Any, Any]:
    """(model ready to train, tokenizer) through `FastLanguageModel`."""
    if device != "cuda":
        raise RuntimeError("the Unsloth backend needs a CUDA GPU")
    from unsloth import FastLanguageModel

    extra: dict[str, Any] = {}
    if cfg.method == "qlora":
        from transformers import BitsAndBytesConfig

        from tui_tuner.train.backends.transformers_backend import compute_dtype

        cdtype = compute_dtype(cfg, device)
        extra["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=cfg.quantization.quant_type,
            bnb_4bit_use_double_quant=cfg.quantization.double_quant, bnb_4bit_compute_dtype=cdtype)
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=model_path,
        # Without this Unsloth swaps the named repository for its own pre-quantized copy (another
        # download, other quantization settings, the revision dropped, offline runs failing).
        use_exact_model_name=True,
        max_seq_length=cfg.model.max_seq_length,
        # Explicit, so the weights and the trainer's autocast (`mixed_precision`) agree on T4/V100 too.
        dtype=weight_dtype(cfg, device),
        load_in_4bit=cfg.method == "qlora",
        full_finetuning=cfg.method == "full",
        revision=cfg.model.revision,
        trust_remote_code=cfg.model.trust_remote_code,
        **extra,
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if cfg.method == "full":
        return model, tokenizer
    targets = ALL_LINEAR if cfg.lora.target_modules == "all-linear" else list(cfg.lora.target_modules)
    model = FastLanguageModel.get_peft_model(
        model,
        r=cfg.lora.r,
        target_modules=targets,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        bias=cfg.lora.bias,
        use_gradient_checkpointing="unsloth" if cfg.training.gradient_checkpointing else False,
        random_state=cfg.training.seed,
        use_rslora=cfg.lora.use_rslora,
        max_seq_length=cfg.model.max_seq_length,
    )
    return model, tokenizer
