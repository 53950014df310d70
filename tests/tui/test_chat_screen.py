"""Pilot drives the Chat screen: load a run, send a prompt, watch the answer stream, stop a generation."""

import asyncio

from textual.app import App

from tests.infer_fixtures import MEMORISED, SYSTEM


class ChatOnly(App):
    """The Chat screen alone, pointed at a runs folder."""

    def __init__(self, runs_dir, target=None):
        super().__init__()
        self.runs_dir = runs_dir
        self.target = target

    def on_mount(self):
        from tui_tuner.tui.screens.chat import ChatScreen

        self.push_screen(ChatScreen(self.target))


async def wait_for(pilot, predicate, timeout=120.0):
    for _ in range(int(timeout / 0.1)):
        if predicate():
            return True
        await pilot.pause(0.1)
    return predicate()


def _screen(app):
    from tui_tuner.tui.screens.chat import ChatScreen

    assert isinstance(app.screen, ChatScreen)
    return app.screen


async def test_load_send_stream_and_compare(memorised_run):
    from tui_tuner.tui.widgets.chat_log import ChatLog, ChatMessage

    app = ChatOnly(memorised_run.parent)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = _screen(app)
        # the run list fills in from a worker; pick the run and load it
        assert await wait_for(pilot, lambda: len(screen.query_one("#chat-run")._options) > 1)
        screen.query_one("#chat-run").value = str(memorised_run)
        await pilot.pause()
        assert "checkpoint-4" in [str(v) for _, v in screen.query_one("#chat-checkpoint")._options]
        statuses = []
        set_status = screen.set_status
        screen.set_status = lambda text, state: (statuses.append((state, text)), set_status(text, state))
        screen.query_one("#chat-load").scroll_visible(animate=False)  # the side panel scrolls at this size
        await pilot.pause()
        assert await pilot.click("#chat-load")
        assert await wait_for(pilot, lambda: screen.chat is not None)
        # the status said it was loading (in a worker) before it said ready
        assert statuses[0][0] == "busy" and "loading" in statuses[0][1] and statuses[-1][0] == "ready"
        assert "ready" in str(screen.query_one("#chat-status").render())

        streamed = []  # what reached the tuned log, batch by batch, while the answer was generated
        tuned_log = screen.query_one("#chat-log-tuned", ChatLog)
        append = tuned_log.append
        tuned_log.append = lambda piece: (streamed.append(piece), append(piece))
        screen.query_one("#gen-temperature").value = "0"
        screen.query_one("#gen-repetition_penalty").value = "1.0"
        screen.query_one("#gen-system").value = SYSTEM
        screen.query_one("#chat-input").value = MEMORISED[0][0]
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: not screen.generating and len(screen.turns) == 2)
        answer = list(tuned_log.query(ChatMessage))[-1]
        assert answer.text.strip() == MEMORISED[0][1]
        assert "".join(streamed).strip() == MEMORISED[0][1] and len(streamed) >= 1

        await pilot.press("ctrl+s")
        await pilot.pause()
        saved = sorted((memorised_run / "chats").glob("chat-*.md"))
        assert saved and MEMORISED[0][1] in saved[-1].read_text()
        assert saved[-1].with_suffix(".jsonl").is_file()
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert not screen.turns and not list(tuned_log.query(ChatMessage))

        # base vs tuned: two columns, two different answers
        await pilot.press("ctrl+o")
        assert screen.query_one("#chat-log-base").display
        screen.query_one("#chat-input").value = MEMORISED[1][0]
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: not screen.generating and len(screen.turns) == 3)
        base_answer = [t for t in screen.turns if t.model == "base"][-1].content
        tuned_answer = [t for t in screen.turns if t.model == "tuned"][-1].content
        assert tuned_answer == MEMORISED[1][1] and base_answer != tuned_answer



async def test_escape_stops_a_generation(memorised_run, monkeypatch):
    import threading

    from transformers import LogitsProcessor, LogitsProcessorList

    # Esc must land mid-generation however fast or loaded the machine is: the answer may not end
    # early (no end-of-turn before max_new_tokens), and it holds after a few tokens until Esc
    # has been pressed, so the stop is what ends it.
    held_tokens = 8
    holding, pressed = threading.Event(), threading.Event()

    class HoldUntilEscape(LogitsProcessor):
        def __init__(self):
            self.calls = 0

        def __call__(self, input_ids, scores):
            self.calls += 1
            if self.calls == held_tokens:
                holding.set()
                pressed.wait(120)
            return scores

    app = ChatOnly(memorised_run.parent, target=memorised_run)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = _screen(app)
        assert await wait_for(pilot, lambda: screen.chat is not None)
        chat = screen.chat
        generate_kwargs = chat.generate_kwargs

        def held_generate_kwargs(settings):
            kwargs = generate_kwargs(settings)
            kwargs.update(min_new_tokens=settings.max_new_tokens,
                          logits_processor=LogitsProcessorList([HoldUntilEscape()]))
            return kwargs

        monkeypatch.setattr(chat, "generate_kwargs", held_generate_kwargs)
        await pilot.press("ctrl+b")
        screen.query_one("#gen-temperature").value = "1.5"
        screen.query_one("#gen-max_new_tokens").value = "2000"
        screen.query_one("#chat-input").value = "Tell me a very long story about the garden."
        await pilot.press("enter")
        log = screen.query_one("#chat-log-base")
        # the base answer has started and is mid-way: stop it
        try:
            assert await wait_for(pilot, lambda: holding.is_set() and log.current is not None)
            assert screen.generating
            await pilot.press("escape")
        finally:
            pressed.set()  # never leave the worker held, even when an assertion failed
        assert await wait_for(pilot, lambda: not screen.generating, timeout=60)
        answers = [t for t in screen.turns if t.role == "assistant"]
        assert [t.model for t in answers] == ["base"]  # stopping also skips the tuned answer
        assert answers[0].info["finish"] == "stopped"
        assert held_tokens <= answers[0].info["tokens"] < 2000
        assert "stopped" in str(screen.query_one("#chat-status").render())
