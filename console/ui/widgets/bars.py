"""The title line at the top of every screen and the key line at the bottom.

Each is one widget that renders one line of text. Textual's Header and Footer build a widget per part (icon,
title, clock space; one per key, rebuilt whenever the bindings change), and styling those widgets was about a
tenth of the dashboard's first paint (docs/performance.md). Here a change of bindings repaints one line.
"""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.content import Content
from textual.widget import Widget

from console.logs.sanitize import one_line
from console.ui.focus import text_field_has_focus


class TitleBar(Widget):
    """`⭘  enginedeck — Dashboard`: the app's title and the screen's (its `TITLE`), on the top line; the alert
    rules firing now (`[alerts] rules_file`) at its right end."""

    DEFAULT_CSS = """
    TitleBar {
        dock: top;
        width: 100%;
        height: 1;
        background: $panel;
        color: $foreground;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def on_mount(self) -> None:
        signal = getattr(self.app, "alerts_changed", None)  # a host app in a widget test has none
        if signal is not None:
            signal.subscribe(self, self._alerts_changed)

    def _alerts_changed(self, _firing: tuple[str, ...]) -> None:
        self.refresh()

    def render(self) -> Content:
        icon = "*" if self.app.has_class("-ascii") else "⭘"
        dash = "-" if self.app.has_class("-ascii") else "—"
        title = f"{self.app.title} {dash} {self.screen.title}" if self.screen.title else self.app.title
        # The icon at the left edge, the title in the middle, as in Textual's own header.
        left = f" {icon} "
        pad = max(0, (self.size.width - len(title)) // 2 - len(left))
        line = f"{left}{' ' * pad}{title}"
        firing: tuple[str, ...] = getattr(self.app, "firing_alerts", ())
        if not firing:
            return Content(line)
        mark = "!" if self.app.has_class("-ascii") else "⚠"
        # Rule names are the operator's own text, still made one inert line.
        alerts = f" {mark} {len(firing)} alert{'s' if len(firing) > 1 else ''}: {one_line(', '.join(firing), 60)} "
        room = max(0, self.size.width - len(alerts))
        return Content.assemble(line[:room].ljust(room), (alerts, "bold $error"))

    def on_click(self, event: events.Click) -> None:
        if event.x < 3:  # the icon opens the palette, as in Textual's header
            event.stop()
            self.app.action_command_palette()


class KeyBar(Widget):
    """The keys the focused screen offers now: `key description` pairs; greyed out when refused (read-only or
    unsupported), left out when hidden; the command palette's key at the right end. Clicking a key presses it.
    While a text field has focus the first key is `esc Leave field`: letters and digits are the field's then."""

    ALLOW_SELECT = False
    COMPONENT_CLASSES: ClassVar[set[str]] = {"keybar--key", "keybar--description", "keybar--disabled"}
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        width: 100%;
        height: 1;
        background: $footer-background;
        color: $footer-foreground;
        text-wrap: nowrap;
        text-overflow: clip;
        .keybar--key { color: $footer-key-foreground; text-style: bold; }
        .keybar--description { color: $footer-description-foreground; }
        .keybar--disabled { text-style: dim; }
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self._spans: list[tuple[int, int, str]] = []  # (start column, end column, key) for clicks

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def _bindings_changed(self, _screen: object) -> None:
        self.refresh()

    def render(self) -> Content:
        key_style = self.get_visual_style("keybar--key", partial=True)
        desc_style = self.get_visual_style("keybar--description", partial=True)
        off_style = self.get_visual_style("keybar--disabled", partial=True)
        palette_key = self.app.COMMAND_PALETTE_BINDING
        seen: set[str] = set()
        entries: list[tuple[Content, int, int, str]] = []  # (text, start column, end column, key)
        column = 0
        palette: tuple[str, str, bool] | None = None
        in_field = text_field_has_focus(self.screen)
        if in_field:
            text = Content.assemble((" esc ", key_style), ("Leave field ", desc_style))
            entries.append((text, 0, text.cell_length, "escape"))
            column = text.cell_length
        screens: list[tuple[str, int]] = []  # the screens' keys (1-6 unless the keymap moved them), their entries
        for key, (_node, binding, enabled, _tooltip) in self.screen.active_bindings.items():
            if key == palette_key:
                palette = (binding.key, self.app.get_key_display(binding), enabled)
                continue
            if not binding.show or binding.action in seen or (in_field and key == "escape"):
                continue
            seen.add(binding.action)
            shown = self.app.get_key_display(binding)
            if (binding.id or "").startswith("screen-"):
                screens.append((shown, len(entries)))
            text = Content.assemble(*((part, style if enabled else style + off_style) for part, style in
                                      ((f" {shown} ", key_style), (f"{binding.description} ", desc_style))))
            entries.append((text, column, column + text.cell_length, binding.key))
            column += text.cell_length
        room = self.size.width
        if len(screens) > 1 and column + len(" ^p palette ") > room:
            # Too short for a word per screen: the screens' keys become one entry (` 1 2 3 4 5 6 screens `), so
            # that ? Help and q Quit still show at 80 columns; clicking it opens the help screen, which names them.
            short = Content.assemble((f" {' '.join(shown for shown, _ in screens)} ", key_style),
                                     ("screens ", desc_style))
            first, dropped = screens[0][1], {index for _, index in screens[1:]}
            kept_entries = [(short, "question_mark") if i == first else (text, key)
                            for i, (text, _start, _end, key) in enumerate(entries) if i not in dropped]
            entries, column = [], 0
            for text, key in kept_entries:
                entries.append((text, column, column + text.cell_length, key))
                column += text.cell_length
        tail: tuple[Content, tuple[int, int, str]] | None = None  # the palette's key and its span
        if palette is not None and self.app.ENABLE_COMMAND_PALETTE:
            # The palette's key keeps its place at the right end, without its word when space is short; on a
            # narrow terminal the keys that do not fit whole are left out before it (the palette and the help
            # screen list every action anyway), never cut mid-word.
            key, shown, enabled = palette
            words = f" {shown} palette " if column + len(shown) + 10 <= room else f" {shown} "
            room = max(0, room - len(words))
            style = key_style if enabled else key_style + off_style
            tail = Content.styled(words, style), (room, room + len(words), key)
        kept = [entry for entry in entries if entry[2] <= room]
        keys = Content.assemble(*(text for text, *_ in kept))
        spans = [(start, end, key) for _text, start, end, key in kept]
        if tail is not None:
            keys = keys.pad_right(room - keys.cell_length) + tail[0]
            spans.append(tail[1])
        self._spans = spans
        return keys

    def on_click(self, event: events.Click) -> None:
        for start, end, key in self._spans:
            if start <= event.x < end:
                event.stop()
                self.app.simulate_key(key)
                return
