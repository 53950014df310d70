"""Model loaders for the worker: `transformers_backend` (transformers + peft + bitsandbytes) and
`unsloth_backend` (Unsloth, CUDA only). Each exposes `load_model(cfg, model_path, device) -> (model, tokenizer)`."""
