"""Sample answers while training: a few prompts answered at every eval and checkpoint step.

A course asks the learner to track "output examples for 3-5 test prompts"; without this they
see answers only after training. The worker's `SamplesCallback` answers the prompts of the
config's `samples:` section with the model being trained (adapter on, greedy, short; the same
model object, so no second copy in memory) and appends one event a step:

    {"kind": "samples", "step": 20, "seconds": 0.8, "new_tokens": 96,
     "answers": [{"prompt": "How heavy is Bramble?", "answer": "...", "reference": "..."}]}

The Train screen shows them as step columns, `tui-tuner runs show` as text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from transformers import TrainerCallback

from tui_tuner.rundir.events import EventWriter

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "</s>", "<|endoftext|>")
"""Tokens that end an assistant turn in the common chat templates: generation stops at any of them."""


@dataclass(frozen=True)
class SamplePrompt:
    """One prompt to answer: the conversation up to the answer, and the reference answer when known."""

    messages: list[dict[str, str]]
    reference: str | None = None

    @property
    def prompt(self) -> str:
        """The last user turn, as shown beside the answers."""
        return next((m["content"] for m in reversed(self.messages) if m.get("role") == "user"), "")


def sample_prompts(samples_cfg: Any, eval_examples: list[list[dict[str, str]]],
                   system_prompt: str | None = None) -> list[SamplePrompt]:
    """The prompts of a `samples:` section: its own prompts, then `from_eval` taken from `eval_examples`.

    An eval example gives its conversation up to the last assistant turn, and that turn as the
    reference. Plain-text examples (no turns) are skipped: there is no question to ask.
    """
    out: list[SamplePrompt] = []
    for text in samples_cfg.prompts:
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + \
            [{"role": "user", "content": text}]
        out.append(SamplePrompt(messages))
    taken = 0
    for conversation in eval_examples:
        if taken >= samples_cfg.from_eval:
            break
        last = max((i for i, m in enumerate(conversation) if m.get("role") == "assistant"), default=None)
        if not last or not any(m.get("role") == "user" for m in conversation[:last]):
            continue
        out.append(SamplePrompt(list(conversation[:last]), conversation[last]["content"]))
        taken += 1
    return out


def stop_token_ids(tokenizer: Any) -> list[int]:
    """The eos id and every end-of-turn token the tokenizer knows."""
    ids = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    unk = getattr(tokenizer, "unk_token_id", None)
    vocab = tokenizer.get_vocab()
    for token in END_OF_TURN_TOKENS:
        tid = vocab.get(token)
        if tid is not None and tid != unk and tid not in ids:
            ids.append(int(tid))
    return ids


def answer_prompts(model: Any, tokenizer: Any, template: str, prompts: list[SamplePrompt],
                   max_new_tokens: int) -> tuple[list[dict[str, Any]], int]:
    """Greedy answers from `model` as it is now (adapter on), one prompt at a time; (answers, new tokens).

    The model is put in eval mode for the answers and back in training mode after, so
    dropout and gradient checkpointing stay as the trainer set them.
    """
    import torch

    from tui_tuner.chat_format.templates import render_conversation

    was_training = model.training
    model.eval()
    stops = stop_token_ids(tokenizer)
    device = next(p.device for p in model.parameters())
    answers, new_tokens = [], 0
    try:
        with torch.no_grad():
            for sample in prompts:
                text = render_conversation(tokenizer, sample.messages, True, chat_template=template)
                ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].to(device)
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                     max_new_tokens=max_new_tokens, eos_token_id=stops or None,
                                     pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                                     else (stops[0] if stops else 0), use_cache=True)
                new = out[0, ids.shape[1]:].tolist()
                new_tokens += len(new)
                answer = tokenizer.decode([t for t in new if t not in stops], skip_special_tokens=True).strip()
                answers.append({"prompt": sample.prompt, "answer": answer, "reference": sample.reference})
    finally:
        if was_training:
            model.train()
    return answers, new_tokens


class SamplesCallback(TrainerCallback):
    """Answers the sample prompts at each eval and each checkpoint step (once a step) and logs them."""

    def __init__(self, events: EventWriter, tokenizer: Any, template: str, prompts: list[SamplePrompt],
                 max_new_tokens: int):
        self.events, self.tokenizer, self.template = events, tokenizer, template
        self.prompts, self.max_new_tokens = prompts, max_new_tokens
        self.done_steps: set[int] = set()

    def _answer(self, state: Any, model: Any) -> None:
        step = state.global_step
        if step in self.done_steps or model is None or not self.prompts:
            return
        self.done_steps.add(step)
        started = time.monotonic()
        answers, new_tokens = answer_prompts(model, self.tokenizer, self.template, self.prompts, self.max_new_tokens)
        self.events.write("samples", step=step, seconds=round(time.monotonic() - started, 3),
                          new_tokens=new_tokens, answers=answers)

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        self._answer(state, model)

    def on_save(self, args, state, control, model=None, **kwargs):
        self._answer(state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._answer(state, model)  # the final adapter's answers, when the last step saved none
