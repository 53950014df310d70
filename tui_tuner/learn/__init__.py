"""Learning labs: see on a real model what a fine-tuning course asserts.

- `quant_lab`: quantize one real weight matrix with bitsandbytes' own functions and
  measure what each format costs and loses (`tui-tuner learn quant MODEL`).
- `memory`: the model's weight memory by precision, from its real parameter count
  (`tui-tuner learn memory MODEL`).
- `lora_math`: LoRA shapes, trainable parameters and adapter size for r, alpha and
  target modules (`tui-tuner learn lora MODEL`).
- `weights`: finding a model's safetensors files and reading tensors one at a time.

No module here imports textual; torch and bitsandbytes are imported inside the
functions that need them.
"""
