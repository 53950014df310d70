"""Which logged metrics each objective plots, and under what titles (the Train screen, `runs compare`).

Events carry trl's metric names (`rewards/margins`, `reward_std`, `rewards/format/mean`, ...);
this table groups them into charts per objective. Plain data, no Textual: `tui.run_view` folds
the series, the Train screen cycles through the charts with `c`.
"""

from __future__ import annotations

import re

CURVES: dict[str, list[tuple[str, list[tuple[str, str]]]]] = {
    "dpo": [("preference accuracy", [("accuracy", "rewards/accuracies")]),
            ("rewards chosen / rejected", [("chosen", "rewards/chosen"), ("rejected", "rewards/rejected")]),
            ("reward margin", [("margin", "rewards/margins")])],
    "orpo": [("preference accuracy", [("accuracy", "rewards/accuracies")]),
             ("rewards chosen / rejected", [("chosen", "rewards/chosen"), ("rejected", "rewards/rejected")]),
             ("reward margin", [("margin", "rewards/margins")]),
             ("SFT part (nll) / log odds ratio", [("nll", "nll_loss"), ("log odds ratio", "log_odds_ratio")])],
    "kto": [("KL to the reference", [("kl", "kl")]),
            ("rewards desirable / undesirable", [("desirable", "rewards/chosen"), ("undesirable", "rewards/rejected")]),
            ("reward margin", [("margin", "rewards/margins")])],
    "reward": [("ranking accuracy", [("accuracy", "accuracy")]),
               ("score margin", [("margin", "margin")]),
               ("scores", [("mean", "mean_reward"), ("min", "min_reward"), ("max", "max_reward")])],
    "grpo": [("mean reward", [("reward", "reward")]),
             ("reward per function", [("*", "rewards/*/mean")]),
             ("reward std (within groups)", [("std", "reward_std")]),
             ("completion length", [("mean", "completions/mean_length"), ("clipped share", "completions/clipped_ratio")]),
             ("KL to the reference", [("kl", "kl")])],
}
"""objective -> [(chart title, [(series label, event key)])]; `*` in a key matches one name (the reward function)."""

_PATTERN = re.compile(r"^rewards/([^/]+)/mean$")


def tracked(key: str) -> bool:
    """Whether a log-event key is a metric some objective plots."""
    if _PATTERN.match(key):
        return True
    return any(key == k for charts in CURVES.values() for _, series in charts for _, k in series)


def charts_for(objective: str, keys: set[str]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The objective's charts with their series resolved against the keys logged so far (empty charts left out)."""
    out = []
    for title, series in CURVES.get(objective, []):
        resolved = []
        for label, key in series:
            if "*" in key:
                resolved += [(m.group(1), k) for k in sorted(keys) if (m := _PATTERN.match(k))]
            elif key in keys:
                resolved.append((label, key))
        if resolved:
            out.append((title, resolved))
    return out
