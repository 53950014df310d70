"""The Chat screen's focus: the message box first, a short Tab cycle, one key back to the message box."""

from __future__ import annotations

from tests.tui.conftest import wait_until
from tui_tuner.tui.app import build_app
from tui_tuner.tui.screens.chat import ChatScreen
from tui_tuner.tui.widgets.key_bar import KeyBar


def chat_app(project):
    return build_app(project_dir=project, runs_dir=project / "runs", offer_reattach=False, offer_quickstart=False,
                     start_screen="chat")


def _focused_id(app) -> str | None:
    return app.focused.id if app.focused is not None else None


async def test_tab_cycles_the_message_box_settings_and_pickers_only(project):
    app = chat_app(project)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen) and _focused_id(app) == "chat-input")
        stops = []
        while not stops or stops[-1] != "chat-input":
            before = _focused_id(app)
            await pilot.press("tab")
            assert await wait_until(pilot, lambda: _focused_id(app) != before)
            stops.append(_focused_id(app))
            assert len(stops) <= 20, stops
        # round the whole cycle and back to the message box, settings first, logs and panels never
        assert stops[-1] == "chat-input"
        assert stops[:6] == ["gen-temperature", "gen-top_p", "gen-max_new_tokens", "gen-repetition_penalty",
                             "gen-system", "gen-compare"]
        assert len(set(stops)) == len(stops) == 10
        assert not {"chat-side", "chat-log-tuned", "chat-log-base", "chat-settings"} & set(stops)
        await pilot.press("shift+tab")
        assert await wait_until(pilot, lambda: _focused_id(app) == "chat-load")  # the button is one shift+tab away


async def test_one_key_goes_to_the_message_box_and_the_key_bar_says_which(project):
    app = chat_app(project)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen) and _focused_id(app) == "chat-input")
        screen = app.screen
        bar = screen.query_one(KeyBar)
        # from a settings field `i` would be typed: ctrl+n jumps, and the bar shows ctrl+n there
        screen.query_one("#gen-temperature").focus()
        assert await wait_until(pilot, lambda: _focused_id(app) == "gen-temperature")
        assert await wait_until(pilot, lambda: "^n Message" in str(bar.render()))
        await pilot.press("ctrl+n")
        assert await wait_until(pilot, lambda: _focused_id(app) == "chat-input")
        assert screen.query_one("#gen-temperature").value == "0.7"
        # a clicked chat log takes focus (to scroll with the keys) though Tab skips it; `i` leaves it
        assert await pilot.click("#chat-log-tuned", offset=(3, 3))
        assert await wait_until(pilot, lambda: _focused_id(app) == "chat-log-tuned")
        assert await wait_until(pilot, lambda: "i Message" in str(bar.render()))
        await pilot.press("i")
        assert await wait_until(pilot, lambda: _focused_id(app) == "chat-input")
        assert screen.query_one("#chat-input").value == ""
        # Tab from a clicked log resumes the cycle at the message box's neighbour, not inside the panel
        assert await pilot.click("#chat-log-tuned", offset=(3, 3))
        assert await wait_until(pilot, lambda: _focused_id(app) == "chat-log-tuned")
        await pilot.press("tab")
        assert await wait_until(pilot, lambda: _focused_id(app) in ("chat-input", "gen-temperature"))
