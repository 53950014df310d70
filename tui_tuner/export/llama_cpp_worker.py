"""Runs llama.cpp (through `llama-cpp-python`) in a child process for the GGUF export.

    python -m tui_tuner.export.llama_cpp_worker < request.json > answer.json

llama.cpp is C++: a failed assertion aborts the whole process. Running it here, in a child,
lets the export report "llama.cpp crashed while quantizing to q4_k_m (signal 6)" with
llama.cpp's own last log lines instead of disappearing. Requests (one JSON object on stdin):

- `{"op": "version"}` -> `{"version": "0.3.36"}`
- `{"op": "quantize", "src": PATH, "dst": PATH, "type": "q4_k_m", "threads": N}`: llama.cpp's
  own `llama_model_quantize` (the code behind the `llama-quantize` tool).
- `{"op": "probe", "model": PATH, "texts": [TEXT...], "prompts": [[ID...]...], "max_tokens": N}`:
  each text tokenized the way llama.cpp's chat does (model's own BOS/EOS rule, special
  tokens parsed), and each prompt answered greedily until an end-of-generation token.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys


def _quantize(request: dict) -> dict:
    import llama_cpp

    ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + request["type"].upper(), None)
    if ftype is None:
        return {"error": f"this llama.cpp has no quantization type {request['type']}"}
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = int(request.get("threads") or 0)
    code = llama_cpp.llama_model_quantize(request["src"].encode(), request["dst"].encode(), ctypes.byref(params))
    return {"ok": code == 0} if code == 0 else {"error": f"llama_model_quantize returned {code}"}


def _probe(request: dict) -> dict:
    import llama_cpp

    threads = int(request.get("threads") or min(4, os.cpu_count() or 1))
    prompts = request.get("prompts") or []
    n_ctx = max([len(p) for p in prompts] + [0]) + int(request.get("max_tokens", 0)) + 8
    llm = llama_cpp.Llama(model_path=request["model"], n_ctx=max(n_ctx, 64), n_batch=max(n_ctx, 64),
                          n_threads=threads, seed=0, verbose=False, vocab_only=not prompts)
    vocab = llm._model.vocab
    meta = {"add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
            "add_eos": bool(llama_cpp.llama_vocab_get_add_eos(vocab)),
            "bos": llama_cpp.llama_vocab_bos(vocab), "eos": llama_cpp.llama_vocab_eos(vocab),
            "eot": llama_cpp.llama_vocab_eot(vocab), "n_vocab": llama_cpp.llama_vocab_n_tokens(vocab)}
    tokens = [llm.tokenize(text.encode("utf-8"), add_bos=True, special=True) for text in request.get("texts", [])]
    answers = []
    for prompt in prompts:
        out: list[int] = []
        stopped = False
        for token in llm.generate(prompt, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                out.append(int(token))
                stopped = True
                break
            out.append(int(token))
            if len(out) >= int(request["max_tokens"]):
                break
        answers.append({"ids": out, "stopped": stopped})
    return {"meta": meta, "tokens": tokens, "answers": answers}


def main() -> int:
    request = json.loads(sys.stdin.read())
    op = request.get("op")
    try:
        if op == "version":
            import llama_cpp

            answer = {"version": getattr(llama_cpp, "__version__", "?")}
        elif op == "quantize":
            answer = _quantize(request)
        elif op == "probe":
            answer = _probe(request)
        else:
            answer = {"error": f"unknown request {op!r}"}
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which says what failed
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()
    return 0 if "error" not in answer else 1


if __name__ == "__main__":
    sys.exit(main())
