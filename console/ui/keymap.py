"""The person's keys: the config's [keymap] (binding id = keys), checked against every binding of the console and
given to Textual's keymap (`App.set_keymap`), which swaps the keys of the bindings with those ids.

Checked before the console starts, each problem a ConfigError at its line of the file (exit 2, as the rest of the
config): an id no binding has (with the nearest one), two ids on one key where both are live at once (a screen's
keys, its widgets' and the app's, or one dialog's), and a key that would take Esc, Ctrl-C, Ctrl-Q, the palette's
Ctrl-P or a screen's key.
A binding may keep its own default key. Moving a screen's key moves its key on the help screen with it.

Every class with bindings is listed here or in `SCREENS` (tests/ui/test_keymap.py fails on one that is not), so
docs/config.md's list of ids is made from `catalogue()`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from textual.binding import Binding, BindingType

from console.errors import ConfigError
from console.ui.screens import SCREENS
from console.ui.textual_compat import normalize_keys

if TYPE_CHECKING:
    from console.config import Config, KeyChoice

# Classes with bindings that are not the screens of SCREENS, by where their keys are live: with a screen's own
# (its name), or alone in a dialog. "module:Class", imported only when a keymap is checked.
ON_SCREENS: dict[str, tuple[str, ...]] = {
    "logs": ("console.ui.widgets.log_pane:LogView",),
}
DIALOGS: dict[str, str] = {
    "help screen": "console.ui.screens.help:HelpScreen",
    "pull dialog": "console.ui.screens.models:PullScreen",
    "yes/no dialog": "console.ui.widgets.dialogs:ConfirmDialog",
    "choice dialog": "console.ui.widgets.dialogs:ChoiceDialog",
    "text dialog": "console.ui.widgets.dialogs:TextDialog",
    "question dialog": "console.ui.widgets.dialogs:AskDialog",
    "probe options dialog": "console.ui.screens.probe_options:ProbeOptionsDialog",
}
# Keys a keymap may not give to another binding: they must do the same thing everywhere.
RESERVED = {"escape": "Esc (it leaves a text field and closes a dialog)",
            "ctrl+c": "Ctrl-C (it copies, and stops what Textual stops with it)",
            "ctrl+q": "Ctrl-Q (Textual's own quit, which comes before every other key)",
            "ctrl+p": "Ctrl-P (the command palette, where every action can be found)"}
EVERYWHERE = "everywhere"


@dataclass(frozen=True)
class BindingInfo:
    id: str
    keys: tuple[str, ...]  # the default keys, in Textual's long form (question_mark, not ?)
    description: str
    scopes: tuple[str, ...]  # where its keys are live: "everywhere" (the app's), a screen's name, a dialog's


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _bindings(owner: Any) -> list[Binding]:
    return [b for b in owner.__dict__.get("BINDINGS", ()) if isinstance(b, Binding) and b.id]


@cache
def _catalogue(app_bindings: tuple[BindingType, ...]) -> tuple[BindingInfo, ...]:
    found: dict[str, tuple[Binding, list[str]]] = {}

    def add(bindings: Iterable[BindingType], scope: str) -> None:
        for binding in bindings:
            if isinstance(binding, Binding) and binding.id:
                found.setdefault(binding.id, (binding, []))[1].append(scope)

    add(app_bindings, EVERYWHERE)
    for name, spec in SCREENS.items():
        screen = spec.load()
        owners = [screen, *getattr(screen, "HELP_WIDGETS", ()), *(_load(t) for t in ON_SCREENS.get(name, ()))]
        for owner in owners:
            add(_bindings(owner), name)
    for name, target in DIALOGS.items():
        add(_bindings(_load(target)), name)
    return tuple(BindingInfo(id_, tuple(normalize_keys(b.key).split(",")), b.description, tuple(scopes))
                 for id_, (b, scopes) in found.items())


def catalogue(app_bindings: Sequence[BindingType]) -> tuple[BindingInfo, ...]:
    """Every binding of the console that has an id (all of them should), with its default keys and scopes.
    Imports every screen and dialog: called only when a keymap is set (and for docs/config.md's list)."""
    return _catalogue(tuple(app_bindings))


def resolve_keymap(config: Config, app_bindings: Sequence[BindingType]) -> dict[str, str]:
    """The config's [keymap] as Textual takes it (binding id -> keys), checked; a ConfigError names the problem."""
    choices = config.keymap.choices
    if not choices:
        return {}
    bindings = {b.id: b for b in catalogue(app_bindings)}

    def fail(choice: KeyChoice, message: str, hint: str | None = None) -> ConfigError:
        where = f"{config.path}:{choice.line}" if config.path and choice.line else (str(config.path or "config"))
        return ConfigError(f"{where}: [keymap] {message}", hint=hint)

    for choice in choices:
        if choice.binding not in bindings:
            import difflib  # only a misspelt keymap needs it

            nearest = difflib.get_close_matches(choice.binding, list(bindings), n=1, cutoff=0.6)
            raise fail(choice, f"no binding has the id `{choice.binding}`",
                       f"did you mean `{nearest[0]}`?" if nearest else "docs/config.md lists every binding id")
    wanted = {c.binding: tuple(normalize_keys(c.keys).split(",")) for c in choices}
    by_id = {c.binding: c for c in choices}
    for name in SCREENS:  # the help screen's digit follows the screen's key
        if f"screen-{name}" in wanted and f"help-screen-{name}" not in wanted:
            wanted[f"help-screen-{name}"] = wanted[f"screen-{name}"]
            by_id[f"help-screen-{name}"] = by_id[f"screen-{name}"]
    keys = {id_: wanted.get(id_, b.keys) for id_, b in bindings.items()}
    screen_keys = {key: SCREENS[name].title for name in SCREENS for key in keys[f"screen-{name}"]}

    def new(id_: str) -> tuple[str, ...]:
        """The keys the keymap gives this binding that it did not have."""
        return tuple(k for k in wanted.get(id_, ()) if k not in bindings[id_].keys)

    for id_ in wanted:
        for key in new(id_):
            if key in RESERVED:
                raise fail(by_id[id_], f"`{by_id[id_].binding}` = \"{by_id[id_].keys}\" would take {RESERVED[key]}")
            if key in screen_keys and not id_.startswith(("screen-", "help-screen-")):
                raise fail(by_id[id_], f"`{by_id[id_].binding}` = \"{by_id[id_].keys}\" would take the key of the "
                           f"{screen_keys[key]} screen ({key})")
    for scope, live in _scopes(bindings.values()).items():
        holders: dict[str, list[str]] = {}
        for id_ in live:
            for key in keys[id_]:
                holders.setdefault(key, []).append(id_)
        for key, ids in holders.items():
            clash = [i for i in ids if key in new(i)]
            if len(ids) > 1 and clash:
                other = next(i for i in ids if i != clash[0])
                raise fail(by_id[clash[0]], f"`{by_id[clash[0]].binding}` and `{other}` would both be {key} "
                           f"{scope_name(scope)}",
                           f"give `{by_id[clash[0]].binding}` another key, or `{other}` one too")
    return {id_: ",".join(k) for id_, k in wanted.items()}


def _scopes(bindings: Iterable[BindingInfo]) -> dict[str, list[str]]:
    """Binding ids live at once, by scope: a screen's own with the app's (the app's reach every screen but the
    dialogs, which stop them), a dialog's alone."""
    every = list(bindings)
    app = [b.id for b in every if EVERYWHERE in b.scopes]
    scopes: dict[str, list[str]] = {EVERYWHERE: app} | {name: list(app) for name in SCREENS}
    for b in every:
        for scope in b.scopes:
            if scope != EVERYWHERE:
                scopes.setdefault(scope, []).append(b.id)
    return scopes


def scope_name(scope: str) -> str:
    """Where a binding's keys are live, in words."""
    if scope == EVERYWHERE:
        return "on every screen"
    return f"on the {SCREENS[scope].title} screen" if scope in SCREENS else f"in the {scope}"


def key_text(binding: Binding, keymap: Mapping[str, str]) -> str:
    """The key a list shows for a binding: the person's when the keymap moved it, else its own."""
    if binding.id and binding.id in keymap:
        return keymap[binding.id]
    return binding.key_display or binding.key
