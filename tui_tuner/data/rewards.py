"""GRPO reward functions: the built-ins and the user's own `file.py:function`.

    grpo:
      rewards:
        - format                                   # <think>...</think> then an answer
        - {function: numeric_match, column: answer, weight: 2}
        - my_rewards.py:no_apologies               # your own code (it runs in the worker)

Every reward function has trl's signature: `f(prompts, completions, **columns) -> list[float | None]`,
where `completions` are message lists (`[{"role": "assistant", "content": ...}]`) and each
dataset column (e.g. `answer`) arrives as a keyword argument holding one value per completion.

A user file is imported (its code runs) only because the user's own config names it; code is
never loaded from a dataset. A reward function that raises, or returns the wrong number of
values, stops the run with `RewardFunctionError`: its traceback and the sample it failed on.
No torch here: the worker wraps these functions, the config check reads user files without running them.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import re
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

THINK_ANSWER = re.compile(r"^\s*<think>(?P<think>.+?)</think>\s*(?P<answer>\S.*)$", re.DOTALL)
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")


class RewardFunctionError(RuntimeError):
    """A reward function failed; the message holds its name, the error and the sample, `hint` what to do."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def completion_text(completion: Any) -> str:
    """The generated text of one completion (a message list, or a plain string)."""
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


def answer_part(text: str) -> str:
    """The answer after a `<think>...</think>` block (the whole text when there is none)."""
    if "</think>" in text:
        return text.rsplit("</think>", 1)[1].strip()
    return text.strip()


def _number(text: str) -> float | None:
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


# ---------------------------------------------------------------------------- built-ins


def format_reward(completions: list, **_: Any) -> list[float]:
    """1 for `<think>reasoning</think>` followed by an answer, 0.5 for the think block without an answer, else 0."""
    out = []
    for c in completions:
        text = completion_text(c)
        m = THINK_ANSWER.match(text)
        out.append(1.0 if m and m.group("think").strip() else 0.5 if "<think>" in text and "</think>" in text else 0.0)
    return out


def make_answer_match(column: str) -> Callable[..., list[float | None]]:
    def answer_match(completions: list, **columns: Any) -> list[float | None]:
        """1 when the answer (after any think block) equals the dataset's `column`, ignoring case and spaces."""
        refs = columns.get(column)
        if refs is None:
            raise KeyError(f"the dataset has no `{column}` column for answer_match to compare against")
        return [None if ref is None else float(" ".join(answer_part(completion_text(c)).split()).casefold()
                                               == " ".join(str(ref).split()).casefold())
                for c, ref in zip(completions, refs)]
    return answer_match


def make_numeric_match(column: str) -> Callable[..., list[float | None]]:
    def numeric_match(completions: list, **columns: Any) -> list[float | None]:
        """1 when the last number in the answer equals the dataset's `column` (as a number), else 0."""
        refs = columns.get(column)
        if refs is None:
            raise KeyError(f"the dataset has no `{column}` column for numeric_match to compare against")
        out: list[float | None] = []
        for c, ref in zip(completions, refs):
            want = _number(str(ref)) if ref is not None else None
            got = _number(answer_part(completion_text(c)))
            out.append(None if want is None else float(got is not None and math.isclose(got, want, rel_tol=1e-6,
                                                                                          abs_tol=1e-9)))
        return out
    return numeric_match


def make_length_penalty(target_chars: int) -> Callable[..., list[float]]:
    def length_penalty(completions: list, **_: Any) -> list[float]:
        """0 up to `target_chars` characters, then down to -1 at twice that length."""
        return [-min(1.0, max(0, len(completion_text(c)) - target_chars) / target_chars) for c in completions]
    return length_penalty


def make_short(target_chars: int) -> Callable[..., list[float]]:
    def short(completions: list, **_: Any) -> list[float]:
        """1 for an empty answer falling to 0 at `target_chars` characters: a reward a tiny model learns fast."""
        return [1.0 - min(1.0, len(completion_text(c).strip()) / target_chars) for c in completions]
    return short


BUILTIN_REWARD_HELP = {
    "format": "1 for <think>…</think> then an answer, 0.5 for the think block alone, else 0",
    "answer_match": "1 when the answer equals the dataset's `answer` column (ignoring case and spaces)",
    "numeric_match": "1 when the answer's last number equals the `answer` column's number",
    "length_penalty": "0 up to target_chars characters (200), down to -1 at twice that",
    "short": "1 for an empty answer, falling to 0 at target_chars characters (200)",
}
"""One line per built-in reward, for pickers and listings."""


# ---------------------------------------------------------------------------- specs


@dataclass
class ResolvedReward:
    name: str
    weight: float
    function: Callable[..., list]
    column: str | None = None
    """The dataset column a built-in compares against."""


def _spec_fields(spec: Any) -> tuple[str, float, str, int]:
    if isinstance(spec, str):
        return spec, 1.0, "answer", 200
    return spec.function, spec.weight, spec.column, spec.target_chars


def reward_columns(specs: list[Any]) -> dict[str, str]:
    """{reward name: dataset column} for the built-ins that read a column."""
    out = {}
    for spec in specs:
        name, _, column, _ = _spec_fields(spec)
        if name in ("answer_match", "numeric_match"):
            out[name] = column
    return out


def _user_file(path_text: str, base_dir: Path | None) -> Path:
    p = Path(path_text).expanduser()
    return p if p.is_absolute() or base_dir is None else base_dir / p


def user_reward_problem(name: str, base_dir: Path | None) -> str | None:
    """Why `file.py:function` cannot be used (checked by reading the file, never running it), or None."""
    path_text, _, func = name.rpartition(":")
    path = _user_file(path_text, base_dir)
    if not path.is_file():
        return f"reward file not found: {path} (`{path_text}` resolved against {base_dir})."
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        return f"{path}:{exc.lineno}: the reward file has a Python syntax error: {exc.msg}."
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read the reward file {path}: {exc}."
    defined = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assigned = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    if func not in defined and func not in assigned:
        names = ", ".join(sorted(defined)) or "none"
        return f"{path} defines no function `{func}` (functions there: {names})."
    node = defined.get(func)
    if node is not None:
        params = node.args
        if not (params.kwarg or any(a.arg == "completions" for a in params.args + params.kwonlyargs)):
            return (f"{path}:{node.lineno}: `{func}` must accept `completions` and `**kwargs`, e.g. "
                    f"`def {func}(prompts, completions, **kwargs) -> list[float]` (trl's reward signature).")
    return None


def load_user_reward(name: str, base_dir: Path | None) -> Callable[..., list]:
    """Import the user's `file.py` (running its code: it is theirs, named in their own config) and return the function."""
    problem = user_reward_problem(name, base_dir)
    if problem:
        raise RewardFunctionError(problem, "Fix `grpo.rewards` in the config.")
    path_text, _, func = name.rpartition(":")
    path = _user_file(path_text, base_dir)
    module_name = f"tui_tuner_user_rewards_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any error in the user's module is theirs to fix
        raise RewardFunctionError(f"importing the reward file {path} failed: {type(exc).__name__}: {exc}\n"
                                  + traceback.format_exc(), f"Fix {path}.") from exc
    fn = getattr(module, func, None)
    if not callable(fn):
        raise RewardFunctionError(f"{path}: `{func}` is not a function.", "Fix `grpo.rewards` in the config.")
    return fn


def resolve_rewards(specs: list[Any], base_dir: Path | None) -> list[ResolvedReward]:
    """The configured reward functions, loaded (user files imported)."""
    out = []
    for spec in specs:
        name, weight, column, target = _spec_fields(spec)
        if name == "format":
            out.append(ResolvedReward("format", weight, format_reward))
        elif name == "answer_match":
            out.append(ResolvedReward("answer_match", weight, make_answer_match(column), column))
        elif name == "numeric_match":
            out.append(ResolvedReward("numeric_match", weight, make_numeric_match(column), column))
        elif name == "length_penalty":
            out.append(ResolvedReward("length_penalty", weight, make_length_penalty(target)))
        elif name == "short":
            out.append(ResolvedReward("short", weight, make_short(target)))
        else:
            out.append(ResolvedReward(name.rpartition(":")[2], weight, load_user_reward(name, base_dir)))
    return out


def reward_spec_problems(specs: list[Any], base_dir: Path | None) -> list[tuple[int, str]]:
    """(index, problem) for user reward files that are missing, do not parse or lack the function."""
    out = []
    for i, spec in enumerate(specs):
        name = _spec_fields(spec)[0]
        if ":" in name:
            problem = user_reward_problem(name, base_dir)
            if problem:
                out.append((i, problem))
    return out


def reward_entry_problem(name: str, base_dir: Path | None) -> str | None:
    """Why `name` cannot be a `grpo.rewards` entry, as `config check` reports it, or None.

    An unknown built-in, a `file.py:function` that is malformed, or a user file that is
    missing, does not parse or lacks the function (read, never run).
    """
    from tui_tuner.config.schema import reward_name_problem as name_problem

    problem = name_problem(name)
    if problem or ":" not in name:
        return problem
    return user_reward_problem(name, base_dir)


# ---------------------------------------------------------------------------- running them


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):
        users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return str(users[-1]) if users else ""
    return str(prompt)


class RewardRecorder:
    """Collects each reward function's scores for a batch; writes the latest completions as one event."""

    def __init__(self, names: list[str], weights: list[float], write: Callable[..., None], keep: int):
        self.names = names
        self.weights = weights
        self.write = write
        self.keep = keep
        self._batch: dict[str, list] = {}

    def record(self, name: str, prompts: list, completions: list, scores: list, step: int | None) -> None:
        self._batch[name] = scores
        if name != self.names[-1] or not self.keep:
            return
        samples = []
        for i in range(min(self.keep, len(completions))):
            per = {n: (self._batch.get(n) or [None] * len(completions))[i] for n in self.names}
            total = sum(w * v for w, v in zip(self.weights, per.values()) if isinstance(v, (int, float)))
            samples.append({"prompt": _prompt_text(prompts[i])[:500], "completion": completion_text(completions[i])[:1000],
                            "rewards": per, "total": round(total, 4)})
        self._batch = {}
        self.write("completions", step=step, samples=samples)


def guarded(reward: ResolvedReward, recorder: RewardRecorder | None = None) -> Callable[..., list]:
    """`reward.function` for trl: failures become `RewardFunctionError` with the traceback and the sample."""

    def call(prompts: list, completions: list, **kwargs: Any) -> list:
        state = kwargs.get("trainer_state")
        done = getattr(state, "global_step", None)
        step = done + 1 if isinstance(done, int) else None  # the step these completions train
        columns = {k: v for k, v in kwargs.items() if k not in ("trainer_state", "log_extra", "log_metric")}
        try:
            scores = reward.function(prompts=prompts, completions=completions, **columns)
        except Exception as exc:  # noqa: BLE001 - report any failure of the user's code with its sample
            sample = {"prompt": _prompt_text(prompts[0])[:300] if prompts else None,
                      "completion": completion_text(completions[0])[:300] if completions else None,
                      **{k: (v[0] if isinstance(v, list) and v else v) for k, v in columns.items()
                         if k != "completion_ids"}}
            raise RewardFunctionError(
                f"reward function `{reward.name}` raised {type(exc).__name__}: {exc} (at step {step}; "
                f"sample: {sample!r})\n{traceback.format_exc()}",
                f"Fix `{reward.name}` (the traceback is in train.log and in status.json), then start the run again."
            ) from exc
        try:
            scores = list(scores)
        except TypeError:
            raise RewardFunctionError(f"reward function `{reward.name}` returned {type(scores).__name__}, not a list "
                                      "of numbers (one per completion).", f"Fix `{reward.name}`.") from None
        if len(scores) != len(completions):
            raise RewardFunctionError(f"reward function `{reward.name}` returned {len(scores)} values for "
                                      f"{len(completions)} completions: return one number (or None) per completion.",
                                      f"Fix `{reward.name}`.")
        bad = next((s for s in scores if s is not None and not isinstance(s, (int, float))), None)
        if bad is not None:
            raise RewardFunctionError(f"reward function `{reward.name}` returned {bad!r} ({type(bad).__name__}): "
                                      "each value must be a number or None.", f"Fix `{reward.name}`.")
        if recorder is not None:
            recorder.record(reward.name, prompts, completions, scores, step)
        return scores

    call.__name__ = reward.name  # trl names the reward curves rewards/<name>/mean after it
    return call
