"""Dataset formats: detect which one a record is in, and normalize it to a conversation.

Every format becomes a list of `{"role": "system"|"user"|"assistant", "content": str}`
messages, except plain text, which stays text: one message `{"role": "text", "content": ...}`
that is trained on as-is (no chat template, every token in the loss), and plain prompt/completion
strings: `{"role": "prompt"}` then `{"role": "completion"}` (no chat template, the completion trained).

    instruction        {"instruction", "input"?, "output", "system"?}           (Alpaca)
    chat               {"messages": [{"role", "content", "weight"?}, ...]}  (OpenAI: weight 0 = not trained)
    sharegpt           {"conversations": [{"from": human|gpt|system, "value"}, ...]}
                       (or `conversations` whose turns use role/content, read as chat turns)
    prompt_completion  {"prompt", "completion"}: strings are plain text (trl's standard form: no chat
                       template, the completion trained); lists of chat messages are conversational
    (preference files, {"prompt", "chosen", "rejected"}, are named as such: SFT needs one answer)
    text               {"text"}
    reasoning          instruction + a thinking field (reasoning / thinking / chain_of_thought / ...)
                       -> the answer becomes "<think>\\n{reasoning}\\n</think>\\n\\n{output}"
"""

from __future__ import annotations

import difflib
import json
from typing import Any, Callable

from tui_tuner.chat_format.templates import COMPLETION_ROLE, PROMPT_ROLE

FORMATS = ("instruction", "chat", "sharegpt", "prompt_completion", "text", "reasoning")
FORMAT_LABELS = {
    "instruction": "instruction (Alpaca: instruction/input/output)",
    "chat": "chat (messages with role/content)",
    "sharegpt": "ShareGPT (conversations with from/value)",
    "prompt_completion": "prompt/completion",  # see read_as: plain text or conversational
    "text": "plain text",
    "reasoning": "reasoning (instruction/output with a separate thinking field)",
}
THINKING_FIELDS = ("reasoning", "thinking", "chain_of_thought", "cot", "rationale", "reasoning_content")
"""Field names that hold a separate chain of thought, in records or in assistant messages."""
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
TEXT_ROLE = "text"
"""Role of the single message of a plain-text example."""

STANDARD_FIELDS = ("instruction", "input", "output", "system", "messages", "conversations", "role", "content",
                   "from", "value", "prompt", "completion", "text", "reasoning")
"""Names that `data.fields` can map a file's own field names onto."""

CHAT_ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"system": "system", "human": "user", "gpt": "assistant", "user": "user", "assistant": "assistant"}
_TOOL_ROLES = ("tool", "function", "function_call", "observation", "ipython", "tool_call", "tool_response")
_RECORD_FIELDS = {
    "instruction": {"instruction", "input", "output", "system"},
    "reasoning": {"instruction", "input", "output", "system", *THINKING_FIELDS},
    "chat": {"messages", "system"},
    "sharegpt": {"conversations", "system"},
    "prompt_completion": {"prompt", "completion", "system"},
    "text": {"text"},
}
_MESSAGE_FIELDS = {"role", "content", "from", "value", "name", "weight", *THINKING_FIELDS}
NOT_TRAINED = "weight"
"""Message key: an assistant message with `weight: 0` (OpenAI's fine-tuning format) is context, not trained."""
PREFERENCE_FIELDS = ("chosen", "rejected")

Report = Callable[[str, str], None]
"""report(severity, message) for the record being normalized."""


def thinking_answer(reasoning: str, answer: str) -> str:
    """An assistant answer with its chain of thought shown first as a thinking block."""
    reasoning = reasoning.strip()
    if not reasoning:
        return answer
    return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n{answer}"


def detect_format(record: dict[str, Any]) -> str | None:
    """The format a single record is in, judged from its field names, or None."""
    keys = set(record)
    if is_preference(record):
        return None
    if "messages" in keys:
        return "chat"
    if "conversations" in keys:
        return "sharegpt"
    if "prompt" in keys or "completion" in keys:
        return "prompt_completion"
    if "instruction" in keys or "output" in keys:
        return "reasoning" if keys & set(THINKING_FIELDS) else "instruction"
    if "text" in keys:
        return "text"
    return None


def is_preference(record: dict[str, Any]) -> bool:
    """A preference record (prompt/chosen/rejected, as DPO/ORPO/KTO-style training reads)."""
    return all(k in record for k in PREFERENCE_FIELDS)


def describe_unknown(record: dict[str, Any]) -> str:
    """Why a record's format cannot be told, and how to map its fields."""
    if is_preference(record):
        return ("this is a preference record (`prompt`/`chosen`/`rejected`, for preference training such as DPO): "
                "supervised fine-tuning learns one answer per example. To fine-tune on the preferred answers, map "
                "them: data.fields: {completion: chosen} (the `rejected` field is then ignored).")
    keys = list(record)
    shown = ", ".join(f"`{k}`" for k in keys[:8]) or "no fields"
    hint = ""
    guesses = {"question": "instruction", "query": "instruction", "answer": "output", "response": "output",
               "dialog": "messages", "conversation": "messages", "chat": "messages", "content": "text",
               "input_text": "instruction", "target": "output", "reply": "output"}
    mapped = {guesses[k]: k for k in keys if k in guesses}
    if mapped:
        pairs = ", ".join(f"{std}: {mine}" for std, mine in mapped.items())
        hint = f" Map your names onto the standard ones with `data.fields: {{{pairs}}}`."
    return (f"cannot tell the dataset format from {shown}: expected `instruction`/`output`, `messages`, "
            f"`conversations`, `prompt`/`completion` or `text`.{hint or ' Map other names with data.fields.'}")


def apply_field_mapping(value: Any, mapping: dict[str, str]) -> Any:
    """Rename the file's own field names to the standard ones (records and their messages)."""
    if not mapping or not isinstance(value, dict):
        return value
    reverse = {mine: std for std, mine in mapping.items()}
    out = {reverse.get(k, k): v for k, v in value.items()}
    for key in ("messages", "conversations", "prompt", "completion"):
        turns = out.get(key)
        if isinstance(turns, list):
            out[key] = [{reverse.get(k, k): v for k, v in t.items()} if isinstance(t, dict) else t for t in turns]
    return out


def mapping_problems(mapping: dict[str, str]) -> list[tuple[str, str]]:
    """(config key, message) for each `data.fields` entry whose key is not a standard field name."""
    problems = []
    for std in mapping:
        if std not in STANDARD_FIELDS:
            close = difflib.get_close_matches(std, STANDARD_FIELDS, n=1)
            hint = f" — did you mean `{close[0]}`?" if close else f" Standard names: {', '.join(STANDARD_FIELDS)}."
            problems.append((f"data.fields.{std}", f"`{std}` is not a standard field name{hint} "
                             "(the key is the standard name, the value your file's name)."))
    return problems


def extra_fields(record: dict[str, Any], fmt: str) -> list[str]:
    """Record fields the format does not use (reported once per file, not per line)."""
    allowed = _RECORD_FIELDS.get(fmt, set())
    return [k for k in record if k not in allowed]


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", int: "a number", float: "a number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _string(record: dict[str, Any], name: str, report: Report, *, required: bool, what: str = "") -> str | None:
    """A string field; None (and an issue) when missing, null, the wrong type or empty while required."""
    label = what or f"`{name}`"
    if name not in record:
        if required:
            close = difflib.get_close_matches(name, [k for k in record if isinstance(k, str)], n=1, cutoff=0.7)
            hint = f" — did you mean `{close[0]}`? (or map it with data.fields)" if close else \
                f"; if your file calls it differently, map it: data.fields: {{{name}: your_name}}"
            report("error", f"missing field `{name}`{hint}.")
            return None
        return ""
    value = record[name]
    if value is None:
        if required:
            report("error", f"{label} is null: give it a string value.")
            return None
        return ""
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):
        joined = _join_parts(value, label, report)
        if joined is None:
            return None
        value = joined
    if not isinstance(value, str):
        report("error", f"{label} must be a string, got {_type_name(value)} ({json.dumps(value)[:40]}): "
                        "put the value in double quotes.")
        return None
    if required and not value.strip():
        report("error", f"{label} is empty: there is nothing to learn from it; fill it in or remove the record.")
        return None
    return value


def _join_parts(parts: list[dict[str, Any]], label: str, report: Report) -> str | None:
    """Multimodal-style content [{"type": "text", "text": ...}]: keep it when it is text only."""
    texts = []
    for part in parts:
        if part.get("type", "text") != "text" or not isinstance(part.get("text"), str):
            report("error", f"{label} contains a `{part.get('type')}` part: only text can be trained here.")
            return None
        texts.append(part["text"])
    return "".join(texts)


def _as_list(value: Any, name: str, report: Report) -> list | None:
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:  # CSV and parquet files often hold the turns as a JSON string
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            report("error", f"`{name}` holds text that is not a valid JSON list: {exc.msg} at character {exc.pos + 1}.")
            return None
    if not isinstance(value, list):
        report("error", f"`{name}` must be a list of turns, got {_type_name(value)}.")
        return None
    if not value:
        report("error", f"`{name}` is an empty list: a conversation needs a user turn and an assistant answer.")
        return None
    return value


def _role(raw: Any, turn: int, allowed: dict[str, str], key: str, report: Report) -> str | None:
    if not isinstance(raw, str):
        report("error", f"turn {turn}: `{key}` must be a string, got {_type_name(raw)}.")
        return None
    if raw in allowed:
        return allowed[raw]
    if raw.lower() in allowed:
        return allowed[raw.lower()]
    names = ", ".join(f"`{r}`" for r in allowed)
    if raw.lower() in _TOOL_ROLES:
        report("error", f"turn {turn}: role `{raw}` (tool calls) is not supported for training; remove tool "
                        f"turns or fold them into the text. Allowed roles: {names}.")
        return None
    close = difflib.get_close_matches(raw.lower(), list(allowed), n=1, cutoff=0.6)
    hint = f" — did you mean `{close[0]}`?" if close else ""
    report("error", f"turn {turn}: unknown role `{raw}`{hint} Allowed roles: {names}.")
    return None


def _turns(value: Any, name: str, role_key: str, content_key: str, allowed: dict[str, str],
           report: Report) -> list[dict[str, str]] | None:
    turns = _as_list(value, name, report)
    if turns is None:
        return None
    messages: list[dict[str, str]] = []
    ok = True
    for i, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict):
            report("error", f"turn {i} of `{name}` must be an object with `{role_key}` and `{content_key}`, "
                            f"got {_type_name(turn)}.")
            ok = False
            continue
        if role_key not in turn:
            other = "role" if role_key == "from" else "from"
            hint = f" (this turn has `{other}`: is the file {'chat' if other == 'role' else 'ShareGPT'} format?)" \
                if other in turn else ""
            report("error", f"turn {i}: missing `{role_key}`{hint}.")
            ok = False
            continue
        role = _role(turn[role_key], i, allowed, role_key, report)
        content = _string(turn, content_key, report, required=False, what=f"turn {i} `{content_key}`")
        if content_key not in turn:
            report("error", f"turn {i}: missing `{content_key}`.")
            ok = False
            continue
        if role is None or content is None:
            ok = False
            continue
        if role == "assistant":
            thought = next((turn[k] for k in THINKING_FIELDS if isinstance(turn.get(k), str)), "")
            content = thinking_answer(thought, content) if thought else content
        message = {"role": role, "content": content}
        if NOT_TRAINED in turn:
            weight = turn[NOT_TRAINED]
            if weight not in (0, 1) or isinstance(weight, bool):
                report("error", f"turn {i}: `weight` must be 0 (not trained) or 1 (trained), got {json.dumps(weight)}.")
                ok = False
                continue
            if role != "assistant":
                report("warning", f"turn {i}: `weight` only applies to assistant turns; a {role} turn is never "
                                  "trained.")
            elif weight == 0:
                message[NOT_TRAINED] = 0
        messages.append(message)
    return messages if ok else None


def check_order(messages: list[dict[str, str]], report: Report) -> bool:
    """Roles in a trainable order: optional system first, then user/assistant alternating, ending with assistant."""
    ok = True
    body_start = 1 if messages and messages[0]["role"] == "system" else 0
    for i, m in enumerate(messages[body_start:], start=body_start + 1):
        if m["role"] == "system":
            report("error", f"turn {i} is a system message: only the first turn may be the system prompt; move "
                            "it to the start or make it part of a user turn.")
            ok = False
    body = [(i, m) for i, m in enumerate(messages, start=1) if m["role"] != "system"]
    if not body:
        report("error", "the conversation has only a system message: add a user turn and an assistant answer.")
        return False
    if body[0][1]["role"] != "user":
        report("error", f"the conversation starts with the assistant (turn {body[0][0]}): the first turn after "
                        "any system message must be the user's.")
        ok = False
    for (i, a), (j, b) in zip(body, body[1:]):
        if a["role"] == b["role"]:
            report("error", f"turns {i} and {j} are both `{a['role']}`: user and assistant turns must alternate; "
                            "merge the two turns.")
            ok = False
    last_index, last = body[-1]
    if last["role"] != "assistant":
        report("error", f"the conversation ends with a `{last['role']}` turn (turn {last_index}): it must end "
                        "with the assistant's answer, or there is nothing to learn.")
        ok = False
    answers = [m for _, m in body if m["role"] == "assistant"]
    if answers and all(m.get(NOT_TRAINED) == 0 for m in answers):
        report("error", "every assistant turn has `weight: 0`, so nothing in this conversation is trained; give at "
                        "least one answer weight 1 (or drop the field).")
        ok = False
    for i, m in body:
        if m["role"] == "assistant" and not m["content"].strip():
            report("error", f"turn {i}: the assistant's answer is empty; fill it in or remove the turn.")
            ok = False
        elif m["role"] == "user" and not m["content"].strip():
            report("warning", f"turn {i}: the user's turn is empty.")
    return ok


def normalize(record: dict[str, Any], fmt: str, report: Report, empty: Callable[[str], None]) -> list[dict[str, str]] | None:
    """The record as a conversation in `fmt`, or None when it has errors (each reported).

    `empty(field)` is called for each empty optional field, for the report's counts.
    """
    messages: list[dict[str, str]] | None
    if fmt in ("instruction", "reasoning"):
        instruction = _string(record, "instruction", report, required=True)
        extra = _string(record, "input", report, required=False)
        output = _string(record, "output", report, required=True)
        system = _string(record, "system", report, required=False)
        thought = ""
        if fmt == "reasoning":
            field = next((k for k in THINKING_FIELDS if k in record), None)
            if field is None:
                report("warning", f"no thinking field ({', '.join(THINKING_FIELDS[:3])}, ...): this example is "
                                  "trained without a thinking block.")
            else:
                thought = _string(record, field, report, required=False) or ""
                if not thought.strip():
                    empty(field)
        if instruction is None or extra is None or output is None or system is None:
            return None
        user = instruction + (f"\n\n{extra}" if extra.strip() else "")
        messages = ([{"role": "system", "content": system}] if system.strip() else []) + [
            {"role": "user", "content": user}, {"role": "assistant", "content": thinking_answer(thought, output)}]
    elif fmt == "chat":
        if "messages" not in record:
            report("error", "missing field `messages` (a list of {\"role\", \"content\"} turns).")
            return None
        messages = _turns(record["messages"], "messages", "role", "content", {r: r for r in CHAT_ROLES}, report)
    elif fmt == "sharegpt":
        if "conversations" not in record:
            report("error", "missing field `conversations` (a list of {\"from\", \"value\"} turns).")
            return None
        turns = record["conversations"]
        first = next((t for t in turns if isinstance(t, dict)), {}) if isinstance(turns, list) else {}
        if "role" in first and "from" not in first:  # role/content turns under `conversations`
            messages = _turns(turns, "conversations", "role", "content", SHAREGPT_ROLES, report)
        else:
            messages = _turns(turns, "conversations", "from", "value", SHAREGPT_ROLES, report)
    elif fmt == "prompt_completion":
        messages = _prompt_completion(record, report)
        if messages and messages[0]["role"] == PROMPT_ROLE:
            if isinstance(record.get("system"), str) and record["system"].strip():
                report("warning", "`system` is ignored: plain prompt/completion text has no chat template to put "
                                  "a system prompt in (use conversational prompt/completion lists for that).")
            return messages
    elif fmt == "text":
        text = _string(record, "text", report, required=True)
        return None if text is None else [{"role": TEXT_ROLE, "content": text}]
    else:
        raise ValueError(f"unknown dataset format {fmt!r}")
    if messages is None:
        return None
    if fmt in ("chat", "sharegpt", "prompt_completion"):
        system = record.get("system")
        if isinstance(system, str) and system.strip() and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": system})
    if not check_order(messages, report):
        return None
    for m in messages:
        if m["role"] == "system" and not m["content"].strip():
            empty("system")
    return messages


def _prompt_completion(record: dict[str, Any], report: Report) -> list[dict[str, str]] | None:
    prompt, completion = record.get("prompt"), record.get("completion")
    if isinstance(prompt, list) or isinstance(completion, list):
        # the conversational form: lists of chat messages
        roles = {r: r for r in CHAT_ROLES}
        p = _turns(prompt, "prompt", "role", "content", roles, report) if "prompt" in record else None
        c = _turns(completion, "completion", "role", "content", roles, report) if "completion" in record else None
        if "prompt" not in record or "completion" not in record:
            report("error", f"missing field `{'prompt' if 'prompt' not in record else 'completion'}`.")
            return None
        return None if p is None or c is None else p + c
    p_text = _string(record, "prompt", report, required=True)
    c_text = _string(record, "completion", report, required=True)
    if p_text is None or c_text is None:
        return None
    # trl's standard (not conversational) form: plain text, no chat template
    return [{"role": PROMPT_ROLE, "content": p_text}, {"role": COMPLETION_ROLE, "content": c_text}]


def read_as(fmt: str, examples: list[list[dict[str, str]]]) -> str:
    """How a file's examples are fed to the model, in words (`data check` prints it)."""
    if fmt == "prompt_completion" and examples:
        if examples[0][0]["role"] == PROMPT_ROLE:
            return ("prompt/completion as plain text (trl's standard form): no chat template, the completion "
                    "and an end-of-sequence token are trained")
        return "prompt/completion as conversations (trl's conversational form): rendered with the chat template"
    return FORMAT_LABELS.get(fmt, fmt)
