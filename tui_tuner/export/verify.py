"""Proof that an exported GGUF behaves like training, in llama.cpp itself.

For each GGUF file, through `llama-cpp-python` in a child process (`llama_cpp_worker`):

1. **Tokens**: rendered conversations (a multi-turn probe with a system message, line breaks,
   accents and emoji, and the first conversations of the run's data), each once as a finished
   conversation and once as a prompt, are tokenized by llama.cpp the way its chat does it
   (a leading BOS text left to the model's own add-BOS rule, special tokens parsed) and must
   give exactly the ids training gave them (`tokenizer(text, add_special_tokens=False)`),
   BOS included. Any difference fails the export.
2. **Answers**: a few prompts (the run's own data, else fixed questions) are answered
   greedily by llama.cpp and by transformers (the merged model in float32) from the same
   ids. The result is reported token for token; f16/bf16/q8_0 are expected to match, lower
   quantizations may drift after some tokens, and that is shown rather than failed.

Without llama-cpp-python the export says it is unverified and how to verify.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

MAX_NEW_TOKENS = 24
INSTALL_HINT = ('pip install "tui-tuner[gguf]" (builds llama.cpp through llama-cpp-python, ~10 min on 2 cores; '
                "see docs/chat-eval-export.md)")

PROBE_CONVERSATION = [
    {"role": "system", "content": "You are a terse assistant.\nAnswer in one line."},
    {"role": "user", "content": "Bonjour! Qu'est-ce qu'un café crème? 😀"},
    {"role": "assistant", "content": "Un espresso avec de la crème.\n  Voilà."},
    {"role": "user", "content": "  What is 12+30?\n\n(only the number)"},
    {"role": "assistant", "content": "42"},
]
FALLBACK_PROMPTS = [[{"role": "user", "content": "Hello! Who are you?"}],
                    [{"role": "user", "content": "What is the capital of France?"}],
                    [{"role": "user", "content": "Write one sentence about the sea."}]]


class LlamaCppFailed(RuntimeError):
    """llama.cpp (in the child process) failed or crashed; the message has its last log lines."""


def llama_cpp_python_installed() -> bool:
    """Whether `llama_cpp` can be imported (checked without loading llama.cpp's library)."""
    return importlib.util.find_spec("llama_cpp") is not None


def run_worker(request: dict[str, Any], *, timeout: float = 3600, what: str = "") -> dict[str, Any]:
    """Run one request in `python -m tui_tuner.export.llama_cpp_worker`; raises LlamaCppFailed."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(min(4, os.cpu_count() or 1)))
    try:
        done = subprocess.run([sys.executable, "-m", "tui_tuner.export.llama_cpp_worker"], input=json.dumps(request),
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise LlamaCppFailed(f"llama.cpp did not finish {what} within {timeout:.0f} s") from exc
    tail = "\n".join(done.stderr.strip().splitlines()[-8:])
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise LlamaCppFailed(f"llama.cpp crashed {what} ({name}). Its last lines:\n{tail}")
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        raise LlamaCppFailed(f"llama.cpp failed {what} (exit {done.returncode}):\n{tail}") from None
    if "error" in answer:
        raise LlamaCppFailed(f"llama.cpp failed {what}: {answer['error']}" + (f"\n{tail}" if tail else ""))
    return answer


def quantize(src: Path, dst: Path, quant: str, log: Callable[[str], None] = lambda s: None) -> None:
    """llama.cpp's own quantization (`llama_model_quantize`) of a 16-bit GGUF into `quant`."""
    log(f"quantizing to {quant} with llama.cpp")
    run_worker({"op": "quantize", "src": str(src), "dst": str(dst), "type": quant,
                "threads": os.cpu_count() or 1}, what=f"while quantizing to {quant}")
    if not dst.is_file():
        raise LlamaCppFailed(f"llama.cpp wrote no {dst.name}")


# ---------------------------------------------------------------------------- what is compared


def _renders(render: Callable[[list[dict[str, str]], bool], str], conv: list[dict[str, str]]) -> list[str]:
    texts = []
    for messages, gen in ((conv, False), (conv[:-1], True)):
        if not messages:
            continue
        try:
            texts.append(render(messages, gen))
        except Exception:  # noqa: BLE001 - the template refuses this shape (e.g. no system role)
            continue
    return texts


def tokenization_texts(render: Callable[[list[dict[str, str]], bool], str],
                       data: list[list[dict[str, str]]]) -> list[str]:
    """Rendered conversations to tokenize both ways: the probe (with and without system) and the run's data."""
    texts = _renders(render, PROBE_CONVERSATION) + _renders(render, PROBE_CONVERSATION[1:])
    for conv in data[:3]:
        if conv and conv[-1]["role"] == "assistant":
            texts += _renders(render, conv)
    if not texts:
        raise ValueError("the chat template renders none of the probe conversations")
    return list(dict.fromkeys(texts))


def prompts_from_data(data: list[list[dict[str, str]]], limit: int = 3) -> list[list[dict[str, str]]]:
    """Up to `limit` prompts (a conversation up to its last user message) from the run's data, else fixed ones."""
    prompts = []
    for conv in data:
        last_user = max((i for i, m in enumerate(conv) if m["role"] == "user"), default=None)
        if last_user is not None:
            prompts.append(conv[: last_user + 1])
        if len(prompts) == limit:
            return prompts
    return prompts or FALLBACK_PROMPTS[:limit]


def transformers_answers(model_dir: Path, prompt_ids: list[list[int]], stop_ids: list[int],
                         max_new_tokens: int = MAX_NEW_TOKENS) -> list[list[int]]:
    """Greedy answers of the merged model (float32 up to ~2B parameters, else its own dtype)."""
    import torch
    from transformers import AutoModelForCausalLM

    size = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
    dtype = torch.float32 if size < 4 * 2**30 else "auto"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
    answers = []
    with torch.no_grad():
        for ids in prompt_ids:
            out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=stop_ids or None,
                                 pad_token_id=stop_ids[0] if stop_ids else 0, top_k=None, top_p=None,
                                 temperature=None, repetition_penalty=1.0)
            answers.append([int(t) for t in out[0][len(ids):]])
    del model
    return answers


# ---------------------------------------------------------------------------- the verdict


@dataclass
class Verification:
    """What llama.cpp did with one GGUF, compared with training and transformers."""

    path: Path
    checked: bool
    reason: str = ""
    """Why it was not checked (checked=False)."""
    token_results: list[dict[str, Any]] = field(default_factory=list)
    answer_results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tokens_ok(self) -> bool:
        return self.checked and all(r["same"] for r in self.token_results)

    @property
    def answers_matching(self) -> int:
        return sum(1 for r in self.answer_results if r["same"])

    def lines(self) -> list[str]:
        name = self.path.name
        if not self.checked:
            return [f"{name}: NOT verified in llama.cpp ({self.reason})"]
        bad = [r for r in self.token_results if not r["same"]]
        out = [f"{name}: llama.cpp tokenizes {len(self.token_results) - len(bad)}/{len(self.token_results)} "
               f"rendered conversations exactly as training did (BOS included)"]
        for r in bad:
            out.append(f"  MISMATCH at token {r['first_difference']}: training {r['training'][:12]}..., "
                       f"llama.cpp {r['llama_cpp'][:12]}...  text {r['text'][:60]!r}")
        if self.answer_results:
            out.append(f"{name}: greedy answers equal to transformers' token for token: "
                       f"{self.answers_matching}/{len(self.answer_results)}")
            for r in self.answer_results:
                if not r["same"]:
                    out.append(f"  prompt {r['prompt']}: first {r['first_difference']} of "
                               f"{max(len(r['transformers']), len(r['llama_cpp']))} tokens agree")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.path.name, "checked": self.checked, "reason": self.reason, "tokens_ok": self.tokens_ok,
                "tokens": self.token_results, "answers": self.answer_results}


def first_difference(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def answers_agree(reference: list[int], got: list[int], stops: set[int]) -> bool:
    """Same greedy answer: equal, or equal until one of them stops on an end token the other also produced there."""
    n = first_difference(reference, got)
    if n == len(reference) == len(got):
        return True
    shorter = reference if len(reference) < len(got) else got
    return n == len(shorter) and bool(shorter) and shorter[-1] in stops


def verify_gguf(path: Path, *, texts: list[str], training_ids: list[list[int]], bos_text: str,
                prompt_ids: list[list[int]], reference: list[list[int]], stop_ids: list[int],
                max_new_tokens: int = MAX_NEW_TOKENS) -> Verification:
    """Tokenize `texts` and answer `prompt_ids` in llama.cpp; compare with training and `reference`."""
    from tui_tuner.export.gguf_meta import read_metadata

    add_bos = bool(read_metadata(path)["add_bos"])
    # llama.cpp's chat drops a BOS the template wrote when the model adds one itself (no double BOS).
    sent = [t[len(bos_text):] if add_bos and bos_text and t.startswith(bos_text) else t for t in texts]
    answer = run_worker({"op": "probe", "model": str(path), "texts": sent, "prompts": prompt_ids,
                         "max_tokens": max_new_tokens}, what=f"while running {path.name}")
    result = Verification(path, True)
    for text, want, got in zip(texts, training_ids, answer["tokens"]):
        result.token_results.append({"text": text, "same": want == got, "first_difference": first_difference(want, got),
                                     "training": want, "llama_cpp": got})
    stops = set(stop_ids) | {answer["meta"]["eos"], answer["meta"]["eot"]}
    for i, (ref, got) in enumerate(zip(reference, answer["answers"])):
        result.answer_results.append({"prompt": i + 1, "same": answers_agree(ref, got["ids"], stops),
                                      "first_difference": first_difference(ref, got["ids"]),
                                      "transformers": ref, "llama_cpp": got["ids"]})
    return result
