"""The Publish dialog of the Runs screen: which hub repository, what to upload, private or not.

Enter or "Publish" uploads; "Dry run" only writes the folder (`publish/` in the run) that would be
uploaded. The repository name is checked here, before any command runs; the command itself
(`tui-tuner publish`) is run by the Runs screen.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from tui_tuner.tui import export_view
from tui_tuner.tui.publish_view import PublishRequest
from tui_tuner.tui.screens.modals import _DIALOG_CSS
from tui_tuner.tui.widgets.key_bar import KeyBar


def what_choices() -> list[tuple[str, str]]:
    """(label, value) of what can be published: the adapter, a merged model, a GGUF per quantization."""
    return ([("LoRA adapter + tokenizer", "adapter"), ("merged safetensors", "merged")]
            + [(f"GGUF {q} + Modelfile", f"gguf:{q}") for q in export_view.gguf_quants()])


class PublishModal(ModalScreen[PublishRequest | None]):
    """Ask for the repository, what to publish, private or not; dismisses with a `PublishRequest`."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="PublishModal") + """
    PublishModal Input, PublishModal Select { margin-bottom: 1; }
    PublishModal #publish-error { color: $error; height: auto; }
    """
    BINDINGS = [
        # Priority so the key bar can show it over the field's own (hidden) enter; only while the field has focus.
        Binding("enter", "publish", "Publish", priority=True),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, run_name: str, repo: str = "") -> None:
        super().__init__()
        self.run_name, self.repo = run_name, repo

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text.assemble("Publish ", (self.run_name, "bold"), " to the Hugging Face Hub"),
                        classes="dialog-title")
            yield Input(self.repo, placeholder="org/name, e.g. alice/garden-bot-lora", id="publish-repo")
            yield Select(what_choices(), value="adapter", allow_blank=False, compact=True, id="publish-what")
            yield Checkbox("private repository", id="publish-private")
            yield Static(Text("A model card, the loss curve and the weights go up with huggingface_hub's login "
                              "(`hf auth login`). Dry run writes the folder in the run only.", style="dim"))
            yield Static(id="publish-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Dry run", id="dry-run")
                yield Button("Publish", id="publish", variant="primary")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#publish-repo", Input).focus()

    def request(self, dry_run: bool) -> PublishRequest | None:
        """The request the dialog holds, or None (with the reason shown) when the repository is not valid."""
        from tui_tuner.export.publish import PublishError, check_repo_id

        repo = self.query_one("#publish-repo", Input).value.strip()
        try:
            check_repo_id(repo)
        except PublishError as exc:
            self.query_one("#publish-error", Static).update(str(exc))
            self.query_one("#publish-repo", Input).focus()
            return None
        what = str(self.query_one("#publish-what", Select).value)
        kind, _, quant = what.partition(":")
        return PublishRequest(repo, kind, quant or "q8_0", self.query_one("#publish-private", Checkbox).value, dry_run)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # On a button, enter presses that button (Cancel, Dry run), so it is not "publish" there.
        return action != "publish" or isinstance(self.focused, Input)

    def action_publish(self) -> None:
        self._finish(dry_run=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._finish(dry_run=False)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
        else:
            self._finish(dry_run=event.button.id == "dry-run")

    def _finish(self, dry_run: bool) -> None:
        request = self.request(dry_run)
        if request is not None:
            self.dismiss(request)

    def action_cancel(self) -> None:
        self.dismiss(None)
