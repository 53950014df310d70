"""How a chat template wraps each message, measured: per-role prefix and suffix, and the stop texts.

A template is rendered on probe conversations with marker texts; each role's prefix and
suffix are read off between the markers, and the result is verified by rendering several
conversations both ways. Chat uses it to find the end-of-turn token to stop on; export
writes it as Ollama's Go template (`tui_tuner.export.modelfile`). A template that is not
per-message prefix/suffix (one that changes earlier turns depending on later ones) raises
`TurnFormatError`.

    fmt = turn_format(render)            # render(messages, add_generation_prompt) -> text
    fmt.assistant[1], fmt.stop_sequences(eos_token="</s>")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

Render = Callable[[list[dict[str, str]], bool], str]

_MARK = {"system": "qSYSq", "user1": "qUSRaq", "assistant1": "qASTaq", "user2": "qUSRbq",
         "assistant2": "qASTbq", "user3": "qUSRcq"}


class TurnFormatError(ValueError):
    """The chat template has no fixed per-message wrapping (says why)."""


@dataclass
class TurnFormat:
    """How a chat template wraps each message: prefix + content + suffix, per role."""

    head: str
    """Text rendered once at the start (the BOS token); llama.cpp adds it itself, so Ollama's template omits it."""
    system: tuple[str, str] | None
    """(prefix, suffix) of a system message, None when the template refuses system messages."""
    user: tuple[str, str]
    assistant: tuple[str, str]
    generation_prompt: str
    """Appended after the last message to cue the assistant's answer."""
    default_system: str | None = None
    """System text the template inserts when the conversation has none (becomes Modelfile SYSTEM)."""

    def render(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The prompt this format gives (without `head`), the way Ollama renders it."""
        out = []
        msgs = list(messages)
        if self.default_system is not None and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": self.default_system})
        for m in msgs:
            prefix, suffix = self.wrapper(m["role"])
            out.append(prefix + m["content"] + suffix)
        if add_generation_prompt:
            out.append(self.generation_prompt)
        return "".join(out)

    def wrapper(self, role: str) -> tuple[str, str]:
        if role == "system":
            if self.system is None:
                raise TurnFormatError("this chat template does not accept a system message")
            return self.system
        if role == "user":
            return self.user
        if role == "assistant":
            return self.assistant
        raise TurnFormatError(f"unknown role {role!r}")

    def stop_sequences(self, eos_token: str | None = None) -> list[str]:
        """Texts that end the assistant's turn: its end-of-turn marker, EOS, and the next user header."""
        stops = []
        for text in (self.assistant[1].strip(), eos_token or "", self.user[0].strip()):
            if text and text not in stops:
                stops.append(text)
        return stops


def _between(text: str, marks: list[str]) -> list[str]:
    """Split `text` at each marker in order; every marker must appear exactly once."""
    pieces = []
    rest = text
    for mark in marks:
        if rest.count(mark) != 1:
            raise TurnFormatError("the chat template changes or repeats message text (e.g. trims, "
                                 "capitalizes or duplicates it), so it has no fixed per-message wrapping")
        before, _, rest = rest.partition(mark)
        pieces.append(before)
    pieces.append(rest)
    return pieces


def _try(render: Render, messages: list[dict[str, str]], gen: bool) -> str | None:
    try:
        return render(messages, gen)
    except Exception:  # noqa: BLE001 - a template may refuse a conversation shape (raise_exception)
        return None


def _probe_conversations(with_system: bool) -> list[list[dict[str, str]]]:
    base = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4."},
            {"role": "user", "content": "Thanks"}]
    convs = [base[:1], base[:3], base]
    if with_system:
        convs += [[{"role": "system", "content": "You are terse."}] + c for c in (base[:1], base[:3], base)]
    return convs


def turn_format(render: Render, bos_token: str = "",
                accept: Callable[[TurnFormat, list[dict[str, str]], str], bool] | None = None) -> TurnFormat:
    """Measure a chat template (through `render`) as per-role prefixes and suffixes, then verify.

    `accept(fmt, conversation, expected)`: a further check each verifying conversation (with a
    generation prompt) must pass; export renders its Go template there. Raises `TurnFormatError` when no prefix/suffix format
    reproduces the template exactly.
    """
    m = _MARK
    user1, asst1, user2 = ({"role": "user", "content": m["user1"]}, {"role": "assistant", "content": m["assistant1"]},
                           {"role": "user", "content": m["user2"]})
    only_user = _try(render, [user1], False)
    only_user_gen = _try(render, [user1], True)
    no_sys = _try(render, [user1, asst1, user2], True)
    if only_user is None or only_user_gen is None or no_sys is None:
        raise TurnFormatError("the chat template fails to render a plain user/assistant conversation")
    with_sys = _try(render, [{"role": "system", "content": m["system"]}, user1, asst1, user2], True)

    c0, user_suffix = _between(only_user, [m["user1"]])
    d0, d1 = _between(only_user_gen, [m["user1"]])
    if d0 != c0 or not d1.startswith(user_suffix):
        raise TurnFormatError("the chat template renders the last user message differently when it asks for an answer")
    generation_prompt = d1[len(user_suffix):]
    b0, b1, b2, b3 = _between(no_sys, [m["user1"], m["assistant1"], m["user2"]])
    if not b1.startswith(user_suffix):
        raise TurnFormatError("the chat template ends user messages differently depending on what follows")
    assistant_prefix = b1[len(user_suffix):]
    head = bos_token if bos_token and b0.startswith(bos_token) else ""

    candidates: list[TurnFormat] = []
    if with_sys is not None:
        a0, a1, a2, a3, a4 = _between(with_sys, [m["system"], m["user1"], m["assistant1"], m["user2"]])
        if a0.startswith(head):
            system_prefix = a0[len(head):]
            # user_prefix ends both a1 (after the system suffix) and a3 (after the assistant suffix);
            # try each common ending, longest first, and keep the one that verifies.
            for n in range(min(len(a1), len(a3)), -1, -1):
                user_prefix = a1[len(a1) - n:]
                if not a3.endswith(user_prefix):
                    continue
                sys_suffix, asst_suffix = a1[: len(a1) - n], a3[: len(a3) - n]
                default_system = None
                rest = b0[len(head):]
                if rest != user_prefix:
                    # A template that writes a default system message when there is none.
                    if rest.startswith(system_prefix) and rest.endswith(sys_suffix + user_prefix):
                        default_system = rest[len(system_prefix): len(rest) - len(sys_suffix + user_prefix)]
                    else:
                        continue
                candidates.append(TurnFormat(head, (system_prefix, sys_suffix), (user_prefix, user_suffix),
                                             (assistant_prefix, asst_suffix), generation_prompt, default_system))
    if not candidates:
        user_prefix = b0[len(head):]
        if b2.endswith(user_prefix):
            candidates.append(TurnFormat(head, None, (user_prefix, user_suffix),
                                         (assistant_prefix, b2[: len(b2) - len(user_prefix)]), generation_prompt))
    for fmt in candidates:
        if _verifies(fmt, render, with_system=fmt.system is not None, accept=accept):
            return fmt
    raise TurnFormatError("the chat template cannot be written as per-message prefixes and suffixes "
                         "(it formats some turns depending on others)")


def _verifies(fmt: TurnFormat, render: Render, *, with_system: bool,
              accept: Callable[[TurnFormat, list[dict[str, str]], str], bool] | None = None) -> bool:
    for conv in _probe_conversations(with_system):
        for gen in (True, False) if conv[-1]["role"] == "assistant" else (True,):
            expected = _try(render, conv, gen)
            if expected is None:
                return False
            if fmt.head + fmt.render(conv, gen) != expected:
                return False
            if gen and accept is not None and not accept(fmt, conv, expected):
                return False
    return True
