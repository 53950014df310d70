"""`tui-tuner chat RUN|PATH`: chat with a fine-tuned model in the terminal, or answer one prompt.

    tui-tuner chat quickstart                          # interactive, with readline history
    tui-tuner chat quickstart --compare                # every prompt answered by base and tuned
    tui-tuner chat runs/x/checkpoints/checkpoint-50 --prompt "What is Bramble?"   # one answer, for scripts
    tui-tuner chat ./my-peft-adapter --prompt "Hi" --json

In the interactive chat: /clear forgets the conversation, /save writes the transcript to
the run directory, /compare toggles base-vs-tuned, /quit (or Ctrl+D) leaves; Ctrl+C stops
an answer being generated.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading

from tui_tuner.commands.options import (
    add_generation_options,
    add_source_options,
    load_for_command,
    settings_from,
    settings_problem,
)

EXIT_BAD_INPUT = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="chat with a trained adapter or checkpoint (or answer one --prompt)")
    add_source_options(p)
    p.add_argument("--compare", action="store_true", help="answer with the base model too, side by side")
    p.add_argument("--prompt", default=None, help="answer this one prompt and exit (use - to read stdin)")
    p.add_argument("--json", action="store_true", help="with --prompt: print the answer(s) as JSON")
    add_generation_options(p)
    p.set_defaults(handler=run_chat)


def _stream_answer(chat, messages, settings, use_adapter: bool, out, stop: threading.Event):
    """Generate on this thread, writing text as it comes; Ctrl+C ends the answer (finish reason `stopped`)."""
    def write(piece: str) -> None:
        out.write(piece)
        out.flush()

    return chat.generate(messages, settings, use_adapter=use_adapter, stop_event=stop, on_text=write)


def _footer(result) -> str:
    parts = [f"{result.new_tokens} tokens", f"{result.tokens_per_s:.1f} tok/s", result.finish_reason]
    if result.truncation_note:
        parts.append(result.truncation_note)
    if result.error:
        parts.append(result.error)
    return "[" + ", ".join(parts) + "]"


def run_chat(args: argparse.Namespace) -> int:
    problem = settings_problem(args)
    if problem:
        print(f"error: {problem}.", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.prompt == "-":
        args.prompt = sys.stdin.read()
    if args.prompt is not None and not args.prompt.strip():
        print("error: --prompt is empty.", file=sys.stderr)
        return EXIT_BAD_INPUT
    chat = load_for_command(args, need_adapter=args.compare)
    if chat is None:
        return EXIT_BAD_INPUT
    settings = settings_from(args)
    if args.prompt is not None:
        return _one_shot(chat, args, settings)
    return _interactive(chat, args, settings)


def _one_shot(chat, args, settings) -> int:
    messages = [{"role": "user", "content": args.prompt}]
    models = ["base", "tuned"] if args.compare else ["tuned"]
    results = {}
    for model in models:
        if args.json:
            results[model] = chat.answer(messages, settings, use_adapter=model == "tuned")
            continue
        if args.compare:
            print(f"--- {model}")
        results[model] = _stream_answer(chat, messages, settings, model == "tuned", sys.stdout, threading.Event())
        print()
        print(_footer(results[model]), file=sys.stderr)
    if args.json:
        print(json.dumps({m: {"answer": r.text, "tokens": r.new_tokens, "finish_reason": r.finish_reason,
                              "prompt_tokens": r.prompt_tokens, "truncation": r.truncation_note or None,
                              "error": r.error} for m, r in results.items()}, indent=2))
    return 1 if any(r.error for r in results.values()) else 0


def _history_file():
    from tui_tuner.export.llama_cpp import cache_dir

    return cache_dir() / "chat_history"


def _interactive(chat, args, settings) -> int:
    from tui_tuner.inference.transcripts import Turn, history_for, save_transcript

    try:
        import readline
    except ImportError:  # not on every platform; input() still works
        readline = None
    history = _history_file()
    if readline is not None:
        try:
            readline.read_history_file(history)
        except OSError:
            pass
    compare = args.compare
    turns: list[Turn] = []
    print(f"chatting with {chat.source.label}. /clear, /save, /compare, /quit; Ctrl+C stops an answer.",
          file=sys.stderr)
    try:
        while True:
            try:
                line = input("you> ")
            except EOFError:
                print()
                break
            except KeyboardInterrupt:
                print()
                break
            text = line.strip()
            if not text:
                continue
            if text in ("/quit", "/exit"):
                break
            if text == "/clear":
                turns.clear()
                print("(conversation cleared)", file=sys.stderr)
                continue
            if text == "/save":
                files = save_transcript(chat.source.output_dir, turns, chat.source.label, vars(settings))
                print("saved " + ", ".join(str(f) for f in files), file=sys.stderr)
                continue
            if text == "/compare":
                if not chat.has_adapter:
                    print("(a full model has no base to compare with)", file=sys.stderr)
                    continue
                compare = not compare
                print(f"(compare {'on' if compare else 'off'})", file=sys.stderr)
                continue
            turns.append(Turn("user", text))
            for model in (["base", "tuned"] if compare else ["tuned"]):
                print(f"{model}> " if compare else "model> ", end="", flush=True)
                result = _stream_answer(chat, history_for(turns, model), settings, model == "tuned", sys.stdout,
                                        threading.Event())
                print()
                print(_footer(result), file=sys.stderr)
                turns.append(Turn("assistant", result.text, model, {"tokens": result.new_tokens,
                                                                    "finish": result.finish_reason}))
    finally:
        if readline is not None:
            try:
                history.parent.mkdir(parents=True, exist_ok=True)
                readline.write_history_file(history)
            except OSError:
                pass
    return 0
