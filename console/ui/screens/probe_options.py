"""The probe screen's options dialog (`o`): what the form's one row has no room for, at 80×24 with no mouse.

Closed ladder or open loop (rates, arrivals, the in-flight cap), bisection's precision, the noise guard, the
verdict mode and energy: every option of `enginedeck probe` a person needs without the CLI. The values are kept as
typed and read by `console.probe.params.probe_params`, the same function as the CLI's flags, so they mean the same
and are refused with the same words; a bad one is shown here on one line and the dialog stays open.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Input, Select, Static

from console.errors import EngineDeckError
from console.logs.sanitize import one_line
from console.probe.params import ARRIVALS, PRECISION, VERDICTS, ProbeParams, probe_params
from console.ui.widgets.dialogs import DIALOG_CSS

LOOPS = (("closed: concurrency ladder", "closed"), ("open: arrival rates", "open"))


@dataclass(frozen=True)
class ProbeOptions:
    """The dialog's values as given (text where the CLI takes text), with the CLI's defaults."""

    loop: str = "closed"
    rates: str = "1,2,4"
    arrivals: str = ARRIVALS[0]
    max_in_flight: str = str(ProbeParams.max_in_flight)
    precision: str = str(PRECISION)
    noise_guard: bool = False
    verdict: str = VERDICTS[0]
    energy: bool = False

    def params(self, *, levels: str | None, requests: str, max_tokens: str) -> ProbeParams:
        """ProbeParams from these options and the form's row, through the CLI's own parser."""
        open_loop = self.loop == "open"
        return probe_params(
            levels=None if open_loop else levels, rates=self.rates if open_loop else None,
            requests=requests, max_tokens=max_tokens, precision=self.precision, noise_guard=self.noise_guard,
            verdict=self.verdict, arrivals=self.arrivals, max_in_flight=self.max_in_flight)

    def summary(self) -> str:
        """One line under the form: what r will run, beyond the form's row."""
        if self.loop == "open":
            parts = [f"open loop {self.rates.replace(' ', '')}/s", self.arrivals, f"≤ {self.max_in_flight} in flight"]
        else:
            parts = ["closed ladder", "bisection off" if self.precision.strip() == "0"
                     else f"bisection to {self.precision.strip()}"]
        parts.append(f"verdict {self.verdict}")
        parts.extend(name for name, on in (("noise guard", self.noise_guard), ("energy", self.energy)) if on)
        return " · ".join(parts)


class ProbeOptionsDialog(ModalScreen[ProbeOptions | None]):
    """tab moves between fields, space toggles a box, enter in a text field applies, escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="probe-options-cancel"),
    ]
    DEFAULT_CSS = DIALOG_CSS.format(name="ProbeOptionsDialog") + """
    ProbeOptionsDialog Horizontal { height: 1; }
    ProbeOptionsDialog Horizontal > Static { width: 32; color: $text-muted; }
    ProbeOptionsDialog Horizontal > Input, ProbeOptionsDialog Horizontal > Select { width: 1fr; }
    ProbeOptionsDialog #opt-error { height: auto; }
    """

    def __init__(self, options: ProbeOptions) -> None:
        super().__init__()
        self._options = options

    def compose(self) -> ComposeResult:
        o = self._options
        with Vertical():
            yield Static("Probe options", classes="dialog-title")
            with Horizontal():
                yield Static("loop")
                yield Select[str](LOOPS, value=o.loop, allow_blank=False, compact=True, id="opt-loop")
            with Horizontal():
                yield Static("rates /s (--rates)")
                yield Input(o.rates, placeholder="e.g. 1,2,4", compact=True, id="opt-rates")
            with Horizontal():
                yield Static("arrivals (--arrivals)")
                yield Select[str]([(a, a) for a in ARRIVALS], value=o.arrivals, allow_blank=False, compact=True,
                                  id="opt-arrivals")
            with Horizontal():
                yield Static("max in flight (--max-in-flight)")
                yield Input(o.max_in_flight, compact=True, id="opt-max-in-flight")
            with Horizontal():
                yield Static("bisection (--precision)")
                yield Input(o.precision, placeholder="0: off", compact=True, id="opt-precision",
                            tooltip="after the ladder, bisect until the bracket is this many apart; 0: no bisection")
            with Horizontal():
                yield Static("verdict (--verdict)")
                yield Select[str]([(v, v) for v in VERDICTS], value=o.verdict, allow_blank=False, compact=True,
                                  id="opt-verdict")
            yield Checkbox("noise guard: c=1 twice, report the spread", o.noise_guard, compact=True,
                           id="opt-noise-guard")
            yield Checkbox("energy: GPU joules per token (NVML)", o.energy, compact=True, id="opt-energy")
            yield Static("", id="opt-error", classes="dialog-warning")
            yield Static("tab: next · space: toggle · enter in a field: apply · esc: cancel",
                         classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#opt-loop", Select).focus()

    def read(self) -> ProbeOptions:
        """The options as the fields hold them now."""
        def pick(selector: str, default: str) -> str:
            value = self.query_one(selector, Select).value
            return value if isinstance(value, str) else default

        return replace(
            self._options, loop=pick("#opt-loop", "closed"), rates=self.query_one("#opt-rates", Input).value,
            arrivals=pick("#opt-arrivals", "poisson"),
            max_in_flight=self.query_one("#opt-max-in-flight", Input).value,
            precision=self.query_one("#opt-precision", Input).value, verdict=pick("#opt-verdict", "pessimistic"),
            noise_guard=self.query_one("#opt-noise-guard", Checkbox).value,
            energy=self.query_one("#opt-energy", Checkbox).value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        options = self.read()
        try:  # the form's row is checked when r is pressed; here only what this dialog holds
            options.params(levels=None, requests="20", max_tokens="128")
        except EngineDeckError as exc:
            self.query_one("#opt-error", Static).update(Text(one_line(str(exc))))
            return
        self.dismiss(options)

    def action_cancel(self) -> None:
        self.dismiss(None)
