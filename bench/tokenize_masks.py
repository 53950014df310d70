"""What masking a dataset costs: one marked rendering with cached templates vs turn-by-turn renders compiled each time.

    PYTHONPATH=$PWD python bench/tokenize_masks.py [--model FOLDER] [--repeats 3]

Tokenizes data/sample.jsonl (as multi-turn conversations of 4 answers each, with a system
prompt) with `tokenize_conversation` as training does, and the way it was done before: every
assistant turn rendered twice more (prefix with generation prompt, conversation through the
turn), each render compiling the template. Both give the same labels (checked). Prints the
medians and their ratio. `--model` takes any local model folder (default: the demo model; a
tiny real-tokenizer model shows a real template's cost, e.g. ~/.cache/tui-tuner/tiny-llama3).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def _conversations(root: Path) -> list[list[dict[str, str]]]:
    rows = [json.loads(line) for line in (root / "data" / "sample.jsonl").read_text().splitlines() if line.strip()]
    out = []
    for i in range(0, len(rows) - 3, 4):
        conv = [{"role": "system", "content": "Answer briefly."}]
        for row in rows[i:i + 4]:
            conv += [{"role": "user", "content": row["instruction"]}, {"role": "assistant", "content": row["output"]}]
        out.append(conv)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder whose tokenizer and template to use (default: the demo model)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from tui_tuner.chat_format import templates
    from tui_tuner.data import tokenize
    from tui_tuner.models.demo import ensure_demo_model

    root = Path(__file__).resolve().parents[1]
    tokenizer = AutoTokenizer.from_pretrained(args.model or str(ensure_demo_model()))
    template = templates.resolve_chat_template("auto", tokenizer)
    conversations = _conversations(root)

    def now() -> list:
        return [tokenize.tokenize_conversation(tokenizer, c, 4096, True, template)["labels"] for c in conversations]

    def before() -> list:
        cached = templates.compile_template
        templates.compile_template = cached.__wrapped__  # compile on every render, as before
        try:
            labels = []
            for conv in conversations:
                full = templates.render_conversation(tokenizer, conv, chat_template=template)
                spans = tokenize._spans_by_prefix(template, tokenizer, conv, full)
                labels.append(tokenize._encode_with_spans(tokenizer, full, spans)[1])
            return labels
        finally:
            templates.compile_template = cached

    assert now() == before(), "the two ways disagree on the labels"
    timings = {}
    for name, fn in (("one marked rendering, cached", now), ("turn by turn, compiled each render", before)):
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
        timings[name] = statistics.median(runs)
    n = len(conversations)
    print(f"{n} conversations of 4 answers, tokenizer {Path(tokenizer.name_or_path).name}")
    for name, seconds in timings.items():
        print(f"  {name:36s} {seconds * 1000:8.1f} ms  ({seconds / n * 1000:.2f} ms per conversation)")
    slow, fast = timings["turn by turn, compiled each render"], timings["one marked rendering, cached"]
    print(f"  ratio before/now: {slow / fast:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
