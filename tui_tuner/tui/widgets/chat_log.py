"""A scrolling chat transcript whose last answer grows as tokens stream in."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static



class ChatMessage(Static):
    """One message: a role label and its text (plain text, never parsed as markup)."""

    def __init__(self, who: str, text: str = "", *, classes: str = "") -> None:
        super().__init__(classes=f"chat-message chat-{who} {classes}".strip())
        self.who = who
        self.text = text
        self.footer = ""

    def on_mount(self) -> None:
        self._render_text()

    def _render_text(self) -> None:
        label = {"user": "you", "note": ""}.get(self.who, self.who)
        body = Text()
        if label:
            body.append(f"{label}: ", style="bold")
        body.append(self.text or ("…" if self.who in ("tuned", "base") else ""))
        if self.footer:
            body.append(f"\n{self.footer}", style="dim italic")
        self.update(body)

    def append(self, piece: str) -> None:
        self.text += piece
        self._render_text()

    def finish(self, footer: str) -> None:
        self.footer = footer
        self._render_text()


class ChatLog(VerticalScroll):
    """The messages of one model's side of the conversation."""

    def __init__(self, title: str, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="chat-log")
        self.border_title = title
        self.current: ChatMessage | None = None

    def add(self, who: str, text: str = "") -> ChatMessage:
        message = ChatMessage(who, text)
        self.mount(message)
        self.scroll_end(animate=False)
        if who in ("tuned", "base"):
            self.current = message
        return message

    def append(self, piece: str) -> None:
        if self.current is not None:
            self.current.append(piece)
            self.scroll_end(animate=False)

    def finish(self, footer: str) -> None:
        if self.current is not None:
            self.current.finish(footer)
            self.current = None

    def clear(self) -> None:
        self.current = None
        self.remove_children()
