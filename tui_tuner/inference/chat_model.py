"""Load a fine-tuned model and stream answers from it: the engine behind chat, eval and the Chat screen.

    from tui_tuner.inference.chat_model import resolve_source, load_chat_model, GenerationSettings
    source = resolve_source("runs/quickstart-20260101-120000")     # or a checkpoint, adapter, model folder
    chat = load_chat_model(source)
    stream = chat.stream([{"role": "user", "content": "What is Bramble?"}], GenerationSettings())
    for piece in stream: print(piece, end="")
    stream.result()                                                 # tokens, time to first token, why it ended

What can be loaded (`resolve_source`):
- a run directory (its final `adapter/`, or the newest checkpoint while it has none, or `checkpoint=N`);
- a checkpoint folder `runs/<run>/checkpoints/checkpoint-N`;
- any PEFT adapter folder (`adapter_config.json`), tui-tuner's or not: the base model comes
  from its `base_model_name_or_path`;
- any full model folder (`config.json`), e.g. `runs/<run>/merged/`;
- a run name or unique prefix under `runs/`.

Base vs tuned uses the same loaded weights: the base answer runs inside PEFT's
`disable_adapter()`, never a second copy of the model. Generation runs on a thread and
streams text through `TextIteratorStreamer`; a stop event cancels it between tokens.
Heavy libraries are imported inside functions only.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from tui_tuner.config.schema import DEMO_MODEL_ID, RunConfig, load_config
from tui_tuner.rundir.files import CHECKPOINTS_DIR, is_run_folder
from tui_tuner.rundir.runs import RunDir, RunError, checkpoint_step, find_run
from tui_tuner.rundir.status import read_status

SourceKind = Literal["run", "checkpoint", "adapter", "model"]
Messages = list[dict[str, str]]


class SourceError(ValueError):
    """A chat/eval/export target that cannot be used; the message says what to do."""


# ---------------------------------------------------------------------------- what to load


@dataclass
class ModelSource:
    """Everything needed to load a model for chat, eval or export."""

    kind: SourceKind
    base_model: str
    """Base weights: a local folder or a hub id (for a full model, the model itself)."""
    adapter_dir: Path | None
    """The PEFT adapter applied on the base, None for a full model."""
    tokenizer_dir: str
    """Where the tokenizer (and the chat template saved with it) is loaded from."""
    label: str
    run_dir: Path | None = None
    config: RunConfig | None = None
    backend: str | None = None
    """The backend the run trained with (from status.json), e.g. `unsloth`."""
    notes: list[str] = field(default_factory=list)

    @property
    def method(self) -> str:
        return self.config.method if self.config else ("lora" if self.adapter_dir else "full")

    @property
    def output_dir(self) -> Path:
        """Where reports, transcripts and exports of this source are written."""
        if self.run_dir is not None:
            return self.run_dir
        return self.adapter_dir or Path(self.base_model)

    @property
    def checkpoint_name(self) -> str | None:
        if self.kind == "checkpoint" and self.adapter_dir is not None:
            return self.adapter_dir.name
        return None


def run_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints that hold loadable weights, oldest first.

    Unlike resuming, chatting needs only the adapter (or model) weights, not the optimizer state.
    """
    return [p for p in RunDir(run_dir).all_checkpoints()
            if any((p / name).is_file() for name in ("adapter_model.safetensors", "adapter_model.bin",
                                                      "model.safetensors", "model.safetensors.index.json"))]


def _run_config(run_dir: Path) -> RunConfig | None:
    loaded = load_config(RunDir(run_dir).config_path)
    return loaded.config if loaded.ok else None


def _run_backend(run_dir: Path) -> str | None:
    status = read_status(run_dir)
    return status.backend if status is not None else None


def resolve_base_model(name: str) -> str:
    """A model name from a config or adapter as something `from_pretrained` loads (the demo model is built locally)."""
    from tui_tuner.models.demo import is_builtin_model, resolve_model_path

    if name == DEMO_MODEL_ID or is_builtin_model(name):
        return str(resolve_model_path(name))
    return name


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer_config.json").is_file()


def _find_run_by_name(name: str, runs_dir: Path) -> Path:
    try:
        return find_run(runs_dir, name).path
    except RunError as exc:
        raise SourceError(f"{name!r} is not a folder, and {exc}") from exc


def resolve_source(target: str | Path, *, runs_dir: str | Path = "runs", checkpoint: int | None = None) -> ModelSource:
    """What to load for `target`: a run dir or name, a checkpoint, a PEFT adapter or a model folder."""
    path = Path(target).expanduser()
    if not path.exists():
        path = _find_run_by_name(str(target), Path(runs_dir))
    path = path.resolve()
    if is_run_folder(path):
        return _source_for_run(path, checkpoint)
    if checkpoint is not None:
        raise SourceError(f"--checkpoint needs a run directory; {path} is not one.")
    if path.parent.name == CHECKPOINTS_DIR and is_run_folder(path.parent.parent):
        return _source_for_run(path.parent.parent, checkpoint_step(path))
    run_dir = path.parent if is_run_folder(path.parent) else None
    if (path / "adapter_config.json").is_file():
        return _adapter_source(path, run_dir, "adapter", f"adapter {path}")
    if (path / "config.json").is_file():
        config = _run_config(run_dir) if run_dir else None
        return ModelSource("model", str(path), None, str(path), f"model {path}", run_dir, config,
                           _run_backend(run_dir) if run_dir else None)
    raise SourceError(f"{path} is neither a run directory, a PEFT adapter (adapter_config.json) nor a model "
                      "folder (config.json).")


def _adapter_source(adapter_dir: Path, run_dir: Path | None, kind: SourceKind, label: str) -> ModelSource:
    try:
        adapter_cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise SourceError(f"{adapter_dir / 'adapter_config.json'}: cannot read it ({exc}).") from exc
    if not isinstance(adapter_cfg, dict):
        raise SourceError(f"{adapter_dir / 'adapter_config.json'} is not a JSON object; the adapter is damaged.")
    if "lora_parameters" in adapter_cfg and "peft_type" not in adapter_cfg:  # mlx-lm's adapter format
        base = adapter_cfg.get("model") or "BASE_MODEL"
        peft_dir = (adapter_dir.parent if adapter_dir.name == "mlx"
                    else adapter_dir.with_name(adapter_dir.name + "-peft"))
        raise SourceError(f"{adapter_dir} is an adapter in mlx-lm's format, which chat, eval and export read once "
                          "converted to PEFT's. Runs of the MLX backend have that conversion in their adapter/ "
                          "folder: use the run itself. For another mlx-lm adapter: `python -c \"from tui_tuner."
                          "train.backends.mlx_backend import convert_mlx_adapter; convert_mlx_adapter("
                          f"'{adapter_dir}', '{peft_dir}', '{base}')\"`, then use {peft_dir}.")
    from tui_tuner.rundir.runs import safetensors_problem

    for weights in adapter_dir.glob("*.safetensors"):
        problem = safetensors_problem(weights)
        if problem:
            raise SourceError(f"{weights}: {problem}; the adapter cannot be loaded. Use an earlier checkpoint "
                              "(--checkpoint N) or export the run again.")
    config = _run_config(run_dir) if run_dir else None
    base = config.model.name_or_path if config else adapter_cfg.get("base_model_name_or_path")
    if not base:
        raise SourceError(f"{adapter_dir / 'adapter_config.json'} does not say which base model it was "
                          "trained on (base_model_name_or_path); the adapter cannot be loaded without it.")
    notes = []
    if _has_tokenizer(adapter_dir):
        tokenizer_dir = str(adapter_dir)
    elif run_dir is not None and _has_tokenizer(RunDir(run_dir).adapter_dir):
        tokenizer_dir = str(RunDir(run_dir).adapter_dir)
    else:
        tokenizer_dir = resolve_base_model(base)
        notes.append("the adapter has no tokenizer of its own; using the base model's")
    return ModelSource(kind, resolve_base_model(base), adapter_dir, tokenizer_dir, label, run_dir, config,
                       _run_backend(run_dir) if run_dir else None, notes)


def _source_for_run(run_dir: Path, checkpoint: int | None) -> ModelSource:
    checkpoints = run_checkpoints(run_dir)
    if checkpoint is not None:
        chosen = [c for c in checkpoints if checkpoint_step(c) == checkpoint]
        if not chosen:
            have = ", ".join(str(checkpoint_step(c)) for c in checkpoints) or "none"
            raise SourceError(f"{run_dir.name} has no checkpoint {checkpoint} (it has: {have}).")
        return _adapter_source(chosen[0], run_dir, "checkpoint", f"{run_dir.name} · {chosen[0].name}")
    adapter = RunDir(run_dir).adapter_dir
    if (adapter / "adapter_config.json").is_file():
        return _adapter_source(adapter, run_dir, "run", f"{run_dir.name} · final adapter")
    if (adapter / "config.json").is_file():  # a full fine-tune saves the whole model there
        return ModelSource("model", str(adapter), None, str(adapter), f"{run_dir.name} · final model", run_dir,
                           _run_config(run_dir), _run_backend(run_dir))
    if checkpoints:
        source = _adapter_source(checkpoints[-1], run_dir, "checkpoint", f"{run_dir.name} · {checkpoints[-1].name}")
        source.notes.append("the run has no final adapter yet; using its newest checkpoint")
        return source
    raise SourceError(f"{run_dir.name} has no adapter and no checkpoint yet: wait for its first checkpoint "
                      f"(every training.save_steps steps) or for the run to finish.")


# ---------------------------------------------------------------------------- settings and results


@dataclass
class GenerationSettings:
    """Sampling settings for one answer."""

    temperature: float = 0.7
    """0 means greedy decoding (always the most likely token)."""
    top_p: float = 0.9
    max_new_tokens: int = 256
    repetition_penalty: float = 1.1
    system_prompt: str | None = None
    """Prepended as a system message when the conversation has none."""
    seed: int | None = None


@dataclass
class GenerationResult:
    """How one generation went."""

    text: str = ""
    prompt_tokens: int = 0
    new_tokens: int = 0
    token_ids: list[int] = field(default_factory=list)
    """The generated token ids (the end-of-turn token included when it ended the answer)."""
    finish_reason: str = ""
    """eos (end of turn), length (max_new_tokens), stopped (cancelled) or error."""
    first_token_s: float | None = None
    elapsed_s: float = 0.0
    dropped_turns: int = 0
    """Oldest messages left out so the conversation fits the context."""
    cut_tokens: int = 0
    """Tokens cut from the start of the prompt when even the last message did not fit."""
    error: str | None = None

    @property
    def tokens_per_s(self) -> float:
        gen_time = self.elapsed_s - (self.first_token_s or 0.0)
        return (self.new_tokens - 1) / gen_time if self.new_tokens > 1 and gen_time > 0 else 0.0

    @property
    def truncation_note(self) -> str:
        parts = []
        if self.dropped_turns:
            parts.append(f"the {self.dropped_turns} oldest message(s) were left out to fit the context")
        if self.cut_tokens:
            parts.append(f"the prompt's first {self.cut_tokens} tokens were cut to fit the context")
        return "; ".join(parts)


# ---------------------------------------------------------------------------- the loaded model


def _auto_dtype(name: str):
    import torch

    if name != "auto":
        return getattr(torch, name)
    if torch.cuda.is_available():
        from tui_tuner.fit.cuda import bf16_supported

        return torch.bfloat16 if bf16_supported() else torch.float16
    return torch.float32


class ChatModel:
    """A loaded model + tokenizer + chat template; generates with or without its adapter.

    This is the transformers engine; `tui_tuner.inference.mlx_chat.MlxChatModel` is the MLX one behind
    the same interface (it overrides the model-facing parts: `adapter`, `loss_sum`, `stream_class`).
    """

    engine = "transformers"

    def __init__(self, model: Any, tokenizer: Any, chat_template: str, source: ModelSource,
                 notes: list[str] | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.source = source
        self.notes = list(source.notes) + list(notes or [])
        self._lock = threading.Lock()
        self.stop_token_ids = _stop_token_ids(tokenizer, chat_template)

    @property
    def has_adapter(self) -> bool:
        return hasattr(self.model, "disable_adapter") and hasattr(self.model, "peft_config")

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def context_length(self) -> int:
        cfg = getattr(self.model, "config", None)
        n = getattr(cfg, "max_position_embeddings", None)
        if not n:
            n = getattr(self.tokenizer, "model_max_length", 2048)
        return int(min(n, 1_000_000))

    def adapter(self, enabled: bool):
        """Context: the adapter on (tuned) or off (base weights, same tensors)."""
        if enabled:
            return contextlib.nullcontext()
        if not self.has_adapter:
            raise SourceError(f"{self.source.label} is a full model with no adapter to switch off, so there is "
                              "no base model to compare with; compare needs a run, checkpoint or adapter.")
        return self.model.disable_adapter()

    def loss_sum(self, input_ids: list[int], labels: list[int]) -> tuple[float, int]:
        """(summed next-token loss, tokens counted) over the positions whose label is not -100."""
        import torch

        with torch.inference_mode():
            labels_t = torch.tensor([labels], device=self.device)
            n = int((labels_t[:, 1:] != -100).sum())  # the model predicts token t+1 from t
            if n == 0:
                return 0.0, 0
            ids = torch.tensor([input_ids], device=self.device)
            loss = self.model(input_ids=ids, labels=labels_t).loss
        return float(loss) * n, n

    def render(self, messages: Messages, add_generation_prompt: bool = True) -> str:
        """The prompt text for `messages`, through the same template as training."""
        from tui_tuner.chat_format.templates import render_conversation

        return render_conversation(self.tokenizer, messages, add_generation_prompt, chat_template=self.chat_template)

    def encode(self, text: str) -> list[int]:
        # The template already holds the BOS token when the model wants one.
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def fit_prompt(self, messages: Messages, max_new_tokens: int) -> tuple[list[int], int, int]:
        """Token ids of the prompt, dropping the oldest turns (then cutting tokens) to fit the context.

        Returns (ids, dropped messages, cut tokens). A system message is always kept.
        """
        budget = max(self.context_length - max_new_tokens, 8)
        system = [m for m in messages[:1] if m["role"] == "system"]
        rest = messages[len(system):]
        dropped = 0
        while True:
            ids = self.encode(self.render(system + rest))
            if len(ids) <= budget or len(rest) <= 1:
                break
            step = 2 if len(rest) > 2 and rest[1]["role"] == "assistant" else 1  # keep user-first order
            rest = rest[step:]
            dropped += step
        cut = max(len(ids) - budget, 0)
        return ids[cut:], dropped, cut

    def prepare(self, messages: Messages, settings: GenerationSettings) -> Messages:
        msgs = [dict(m) for m in messages]
        if settings.system_prompt and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": settings.system_prompt})
        return msgs

    def generate_kwargs(self, settings: GenerationSettings) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": settings.max_new_tokens,
            "repetition_penalty": settings.repetition_penalty,
            "eos_token_id": self.stop_token_ids or None,
            "pad_token_id": self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
            else (self.stop_token_ids[0] if self.stop_token_ids else None),
        }
        if settings.temperature and settings.temperature > 0:
            kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def stream(self, messages: Messages, settings: GenerationSettings | None = None, *, use_adapter: bool = True,
               stop_event: threading.Event | None = None) -> "GenerationStream":
        """Start generating an answer to `messages` on a thread; iterate the result for text pieces."""
        settings = settings or GenerationSettings()
        stream = self.stream_class(self, self.prepare(messages, settings), settings, use_adapter,
                                   stop_event or threading.Event())
        stream.start()
        return stream

    def generate(self, messages: Messages, settings: GenerationSettings | None = None, *, use_adapter: bool = True,
                 stop_event: threading.Event | None = None,
                 on_text: Callable[[str], None] = lambda piece: None) -> GenerationResult:
        """Generate an answer on the calling thread, passing each new piece of text to `on_text`.

        What the terminal chat and the TUI's worker use: no second thread, so no per-token
        thread hand-off (see bench/chat_latency.py).
        """
        settings = settings or GenerationSettings()
        return self.stream_class(self, self.prepare(messages, settings), settings, use_adapter,
                                 stop_event or threading.Event(), on_text).run()

    def answer(self, messages: Messages, settings: GenerationSettings | None = None, *,
               use_adapter: bool = True) -> GenerationResult:
        """Generate a whole answer."""
        return self.generate(messages, settings, use_adapter=use_adapter)


def _stop_token_ids(tokenizer: Any, chat_template: str) -> list[int]:
    """EOS plus the template's end-of-turn token (e.g. <|im_end|>, <|eot_id|>) when it is one token."""
    ids: list[int] = []
    eos = tokenizer.eos_token_id
    for tid in eos if isinstance(eos, list) else [eos]:
        if tid is not None and tid not in ids:
            ids.append(int(tid))
    try:
        from tui_tuner.chat_format.templates import render_conversation
        from tui_tuner.chat_format.turns import TurnFormatError, turn_format

        fmt = turn_format(lambda m, g: render_conversation(tokenizer, m, g, chat_template=chat_template),
                          bos_token=str(tokenizer.bos_token or ""))
        end_of_turn = fmt.assistant[1].strip()
    except (TurnFormatError, ImportError, ValueError):
        end_of_turn = ""
    if end_of_turn:
        tok_ids = tokenizer(end_of_turn, add_special_tokens=False)["input_ids"]
        if len(tok_ids) == 1 and tok_ids[0] not in ids:
            ids.append(int(tok_ids[0]))
    return ids


STREAM_FLUSH_S = 0.02
"""Text is handed to the reader at most this often (the first token at once): fewer thread wake-ups per token."""


def _token_streamer(tokenizer: Any, on_text: Callable[[str], None] | None = None):
    """A `TextIteratorStreamer` that hands over text as soon as it is complete, in small time batches.

    The stock streamer holds text back until a space or newline (so a word is never shown
    half-decoded), which delays the first visible token by a whole word; here text is only
    held back while it ends in an incomplete UTF-8 character. Waking the reading thread
    for every token costs throughput on a busy CPU, so after the first token text is passed
    on every `STREAM_FLUSH_S` (20 ms: faster than a reader notices). With `on_text`, text
    goes to that callback on the generating thread instead, token by token.
    """
    from transformers import TextIteratorStreamer

    class TokenStreamer(TextIteratorStreamer):
        pending = ""
        flushed_at: float | None = None
        tokens = 0
        flush_s = 0.0 if on_text is not None else STREAM_FLUSH_S

        def on_finalized_text(self, text: str, stream_end: bool = False):
            if on_text is None:
                super().on_finalized_text(text, stream_end)
            elif text:
                on_text(text)

        def put(self, value):
            if len(value.shape) > 1:
                if value.shape[0] > 1:
                    raise ValueError("the streamer handles one sequence at a time")
                value = value[0]
            if self.skip_prompt and self.next_tokens_are_prompt:
                self.next_tokens_are_prompt = False
                return
            new_ids = value.tolist()
            self.tokens += len(new_ids)
            self.token_cache.extend(new_ids)
            text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)
            if text.endswith("\ufffd"):
                return  # a multi-byte character continues in the next token
            self.pending += text[self.print_len:]
            if text.endswith("\n"):
                self.token_cache, self.print_len = [], 0
            else:
                self.print_len = len(text)
            now = time.perf_counter()
            if self.pending and (self.flushed_at is None or now - self.flushed_at >= self.flush_s):
                self.on_finalized_text(self.pending)
                self.pending, self.flushed_at = "", now

        def end(self):
            if self.pending:
                self.on_finalized_text(self.pending)
                self.pending = ""
            super().end()

    return TokenStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


class GenerationStream:
    """Text pieces of one answer as they are generated; `result()` after iteration says how it went."""

    def __init__(self, chat: ChatModel, messages: Messages, settings: GenerationSettings, use_adapter: bool,
                 stop_event: threading.Event, on_text: Callable[[str], None] | None = None):
        self.chat = chat
        self.messages = messages
        self.settings = settings
        self.use_adapter = use_adapter
        self.stop_event = stop_event
        ids, dropped, cut = chat.fit_prompt(messages, settings.max_new_tokens)
        self._ids = ids
        self._result = GenerationResult(prompt_tokens=len(ids), dropped_turns=dropped, cut_tokens=cut)
        self._pieces: list[str] = []
        self._t0 = 0.0
        self._on_text = on_text
        self._streamer = _token_streamer(chat.tokenizer, self._received if on_text is not None else None)
        self._thread = threading.Thread(target=self._run, name="tui-tuner-generate", daemon=True)

    def start(self) -> None:
        """Generate on a thread; iterate this object for the text."""
        self._t0 = time.perf_counter()
        self._thread.start()

    def run(self) -> GenerationResult:
        """Generate on the calling thread, handing text to `on_text` as it comes (no extra thread)."""
        self._t0 = time.perf_counter()
        self._run()
        self._result.elapsed_s = time.perf_counter() - self._t0
        self._result.text = "".join(self._pieces).strip()
        return self._result

    def _received(self, piece: str) -> None:
        if self._result.first_token_s is None:
            self._result.first_token_s = time.perf_counter() - self._t0
        self._pieces.append(piece)
        self._on_text(piece)

    def stop(self) -> None:
        """Ask the generation to stop after the current token."""
        self.stop_event.set()

    def _run(self) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        event = self.stop_event
        chat = self.chat
        # Checked after every token: answer with ready-made tensors, no allocation per token.
        go_on = torch.zeros((1,), dtype=torch.bool, device=chat.device)
        halt = torch.ones((1,), dtype=torch.bool, device=chat.device)

        class _StopOnEvent(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return halt if event.is_set() else go_on

        try:
            input_ids = torch.tensor([self._ids], device=chat.device)
            kwargs = chat.generate_kwargs(self.settings)
            if self.settings.seed is not None:
                torch.manual_seed(self.settings.seed)
            with chat._lock, chat.adapter(self.use_adapter), torch.inference_mode():
                out = chat.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                          streamer=self._streamer,
                                          stopping_criteria=StoppingCriteriaList([_StopOnEvent()]), **kwargs)
            new = out[0, input_ids.shape[1]:].tolist()
            self._result.new_tokens = len(new)
            self._result.token_ids = new
            if event.is_set():
                self._result.finish_reason = "stopped"
            elif new and new[-1] in chat.stop_token_ids:
                self._result.finish_reason = "eos"
            else:
                self._result.finish_reason = "length"
        except KeyboardInterrupt:  # Ctrl+C in a terminal chat generating on the main thread
            self._result.new_tokens = self._streamer.tokens
            self._result.finish_reason = "stopped"
        except Exception as exc:  # noqa: BLE001 - reported to the consumer through result()
            self._result.finish_reason = "error"
            self._result.error = f"{type(exc).__name__}: {exc}"
            self._streamer.end()

    def __iter__(self) -> Iterator[str]:
        for piece in self._streamer:
            if piece:
                if self._result.first_token_s is None:
                    self._result.first_token_s = time.perf_counter() - self._t0
                self._pieces.append(piece)
                yield piece
        self._thread.join()
        self._result.elapsed_s = time.perf_counter() - self._t0

    def result(self) -> GenerationResult:
        """The finished generation (waits for the thread)."""
        self._thread.join()
        if not self._result.elapsed_s:
            self._result.elapsed_s = time.perf_counter() - self._t0
        self._result.text = "".join(self._pieces).strip()
        return self._result


ChatModel.stream_class = GenerationStream  # the engine's generation loop; MLX has its own


# ---------------------------------------------------------------------------- loading


def load_tokenizer_and_template(source: ModelSource) -> tuple[Any, str]:
    """The tokenizer for `source` and the chat template training used (saved with the adapter)."""
    from transformers import AutoTokenizer

    from tui_tuner.chat_format.templates import resolve_chat_template, tokenizer_template

    trust = bool(source.config and source.config.model.trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(source.tokenizer_dir, trust_remote_code=trust)
    saved = tokenizer_template(tokenizer)
    if saved and source.tokenizer_dir != source.base_model:
        template = saved  # saved by training with the adapter: exactly what the model was trained on
    else:
        template = resolve_chat_template(source.config.model if source.config else None, tokenizer)
    tokenizer.chat_template = template
    return tokenizer, template


def use_unsloth(source: ModelSource, own_process: bool = False) -> tuple[bool, str]:
    """Whether to load through Unsloth's fast inference path, and why (not).

    Only in a process that does nothing but this chat (`own_process`, e.g. `tui-tuner chat`):
    importing Unsloth patches transformers, peft and trl for the whole process, so the TUI and
    anything else that trains, evaluates or loads other models keeps plain transformers.
    """
    if source.backend != "unsloth":
        return False, "the run did not train with Unsloth"
    if not own_process:
        return False, ("Unsloth patches transformers process-wide, so it is only used by `tui-tuner chat` "
                       "in its own process; loading with transformers + peft")
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    if not torch.cuda.is_available():
        return False, "no CUDA GPU"
    try:
        import unsloth  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - unsloth raises many kinds of errors without a GPU
        return False, f"unsloth does not import ({type(exc).__name__})"
    return True, "the run trained with Unsloth and a CUDA GPU is present"


def fetch_base_model(source: ModelSource, *, progress: Callable[[Any], None] | None = None,
                     note: Callable[[str], None] | None = None) -> None:
    """Download the base model when it is a hub id the cache lacks (disk checked first; see
    tui_tuner.models.download); raises `SourceError` with what to do when it cannot."""
    from tui_tuner.models.download import ModelDownloadError, ensure_model, is_hub_model

    name = source.base_model
    if not is_hub_model(name):
        return
    cfg = source.config
    revision = cfg.model.revision if cfg and cfg.model.name_or_path == name else None
    try:
        ensure_model(name, revision, progress=progress, note=note)
    except ModelDownloadError as exc:
        raise SourceError(f"{exc}. {exc.hint}") from exc


def load_chat_model(source: ModelSource, *, log: Callable[[str], None] = lambda s: None,
                    device: str | None = None, load_in_4bit: bool | None = None,
                    own_process: bool = False, download_progress: Callable[[Any], None] | None = None,
                    engine: str = "auto") -> ChatModel:
    """Load `source` for generation: transformers (+ peft), MLX for runs trained with MLX where it
    imports (`engine`: auto, mlx or transformers; see `tui_tuner.inference.mlx_chat.use_mlx`), or
    Unsloth for Unsloth runs on CUDA when the caller is a process of its own (`own_process`; see `use_unsloth`).

    A hub base model the cache lacks is downloaded first; `download_progress` receives its byte counts.
    """
    from tui_tuner.core.quiet import quiet_library_noise

    fetch_base_model(source, progress=download_progress, note=log)

    from tui_tuner.inference.mlx_chat import load_mlx_chat_model, use_mlx

    with_mlx, mlx_why = use_mlx(source, engine)
    if with_mlx:
        log(f"loading with MLX ({mlx_why})")
        return load_mlx_chat_model(source, log=log)
    fast, why = use_unsloth(source, own_process=own_process)
    if fast:
        log(f"loading with Unsloth ({why})")
        return _load_unsloth(source)
    quiet_library_noise()
    chat = _load_transformers(source, log=log, device=device, load_in_4bit=load_in_4bit)
    if source.backend == "unsloth":
        chat.notes.append(f"trained with Unsloth, loaded with transformers: {why}")
    if source.backend == "mlx":
        chat.notes.append(f"trained with MLX, loaded with transformers: {mlx_why}")
    return chat


def _load_unsloth(source: ModelSource) -> ChatModel:
    from unsloth import FastLanguageModel

    cfg = source.config
    max_seq = cfg.model.max_seq_length if cfg else 2048
    name = str(source.adapter_dir) if source.adapter_dir else source.base_model
    model, _ = FastLanguageModel.from_pretrained(model_name=name, max_seq_length=max_seq,
                                                 dtype=_auto_dtype(cfg.model.dtype if cfg else "auto"),
                                                 load_in_4bit=source.method == "qlora",
                                                 use_exact_model_name=True)  # the run's own base, never a remap
    FastLanguageModel.for_inference(model)  # Unsloth's 2x faster generation kernels
    tokenizer, template = load_tokenizer_and_template(source)
    return ChatModel(model, tokenizer, template, source, ["Unsloth fast inference"])


def quantization_plan(source: ModelSource, load_in_4bit: bool | None) -> tuple[Any, str]:
    """(BitsAndBytesConfig or None, note): 4-bit for QLoRA runs where bitsandbytes has a CUDA GPU."""
    import torch

    want = source.method == "qlora" if load_in_4bit is None else load_in_4bit
    if not want:
        return None, ""
    if source.backend == "mlx" and load_in_4bit is None:  # NF4 would be another base than the one it trained on
        return None, ("MLX QLoRA run loaded on the unquantized base: it trained on MLX's affine 4-bit weights, "
                      "which transformers does not load")
    if not torch.cuda.is_available():
        return None, "QLoRA run loaded unquantized: 4-bit bitsandbytes weights need a CUDA GPU here"
    from transformers import BitsAndBytesConfig

    q = source.config.quantization if source.config else None
    compute = _auto_dtype(q.compute_dtype if q else "auto")
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=q.quant_type if q else "nf4",
                              bnb_4bit_use_double_quant=q.double_quant if q else True,
                              bnb_4bit_compute_dtype=compute), "4-bit weights (as trained)"


def _load_transformers(source: ModelSource, *, log: Callable[[str], None], device: str | None,
                       load_in_4bit: bool | None) -> ChatModel:
    import torch
    from transformers import AutoModelForCausalLM

    cfg = source.config
    dtype = _auto_dtype(cfg.model.dtype if cfg else "auto")
    quant, qnote = quantization_plan(source, load_in_4bit)
    notes = [qnote] if qnote else []
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": bool(cfg and cfg.model.trust_remote_code)}
    if cfg and cfg.model.revision and source.base_model == cfg.model.name_or_path:
        kwargs["revision"] = cfg.model.revision
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": 0}
    log(f"loading {source.base_model}")
    model = AutoModelForCausalLM.from_pretrained(source.base_model, **kwargs)
    if quant is None:
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if source.adapter_dir is not None:
        from peft import PeftModel

        log(f"applying adapter {source.adapter_dir}")
        model = PeftModel.from_pretrained(model, str(source.adapter_dir))
    model.eval()
    tokenizer, template = load_tokenizer_and_template(source)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        raise SourceError(f"the tokenizer in {source.tokenizer_dir} has {len(tokenizer)} tokens but the model's "
                          f"embeddings only {model.get_input_embeddings().weight.shape[0]}: they do not belong together.")
    return ChatModel(model, tokenizer, template, source, notes)
