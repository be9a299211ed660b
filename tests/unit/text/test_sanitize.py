import pytest

from console.logs.sanitize import escape_markup, inert, neutralise, one_line

HOSTILE = [
    ("osc52 clipboard", "a\x1b]52;c;ZXZpbA==\x07b", "ab"),
    ("osc title with ST", "a\x1b]0;pwned\x1b\\b", "ab"),
    ("osc8 hyperlink", "\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\", "click"),
    ("csi cursor move", "x\x1b[2J\x1b[H\x1b[10;20Hy", "xy"),
    ("csi colour", "\x1b[31mred\x1b[0m", "red"),
    ("bel", "ding\x07dong", "dingdong"),
    ("backspace trick", "safe\x08\x08\x08\x08evil", "safeevil"),
    ("carriage return overwrite", "rm -rf /\rls", "rm -rf /ls"),
    ("8-bit csi", "a\x9b2Jb", "ab"),
    ("8-bit osc", "a\x9d0;title\x07b", "ab"),
    ("dcs", "a\x1bPq#0;2;0;0;0\x1b\\b", "ab"),
    ("lone esc at end", "abc\x1b", "abc"),
    ("nul and del", "a\x00b\x7fc", "abc"),
]


@pytest.mark.parametrize("name, raw, expected", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_neutralise_removes_terminal_controls(name, raw, expected):
    out = neutralise(raw)
    assert out == expected
    assert not any(ord(c) < 32 and c not in "\n\t" for c in out)
    assert not any(0x7F <= ord(c) <= 0x9F for c in out)


def test_neutralise_keeps_text_newlines_tabs_and_unicode():
    text = "héllo\n\twörld 日本 🙂 [ok]"
    assert neutralise(text) == text


@pytest.mark.parametrize("raw", ["[bold]x[/]", "[link=http://evil]click[/link]", "[/]", "[@click=app.quit]q[/]",
                                 "[$accent]x", "[B]x[/B]", "[red on white]x"])
def test_escaped_markup_renders_literally_in_rich_and_textual(raw):
    from rich.markup import render
    from textual.content import Content

    escaped = escape_markup(raw)
    assert render(escaped).plain == raw and not render(escaped).spans
    content = Content.from_markup(escaped)
    assert content.plain == raw and not content.spans


@pytest.mark.parametrize("raw", ["a\\[b]", "end\\", "[link=x]\\"])
def test_backslashes_never_reopen_markup(raw):
    from textual.content import Content

    assert not Content.from_markup(escape_markup(raw)).spans


def test_inert_and_one_line():
    assert inert("\x1b[31m[bold]x[/]") == "\\[bold]x\\[/]"
    assert one_line("a\nb\x1b[2J\tc", 100) == "a b c"
    assert one_line("x" * 50, 10) == "x" * 9 + "…"
