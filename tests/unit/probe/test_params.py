"""probe_params: the one reader of probe options, for `enginedeck probe`'s flags and the probe screen's form."""

import pytest

from console.cli import main
from console.errors import ConfigError
from console.probe.params import DEFAULT_LEVELS, probe_params


def test_counts_as_text_and_the_kind_of_loop():
    closed = probe_params(levels="1, 4", requests="8", max_tokens=16, precision="0", max_in_flight="12")
    assert (closed.levels, closed.requests, closed.max_tokens, closed.precision, closed.max_in_flight) == (
        (1, 4), 8, 16, 0, 12)
    assert not closed.open_loop
    opened = probe_params(rates="5,10", arrivals="constant")
    assert opened.rates == (5.0, 10.0) and opened.open_loop and opened.levels == DEFAULT_LEVELS
    assert probe_params(rate="2.5").rates == (2.5,)


@pytest.mark.parametrize(("options", "said"), [
    ({"requests": "many"}, "probe --requests wants a whole number, not 'many'"),
    ({"precision": "1.5"}, "probe --precision wants a whole number, not '1.5'"),
    ({"rates": "5,fast"}, "--rates wants requests per second"),
    ({"rates": "1", "levels": "1,2"}, "--levels is the closed loop and --rate/--rates the open loop"),
    ({"rate": "1", "rates": "1,2"}, "give --rate or --rates, not both"),
    ({"levels": "4,2"}, "probe levels must rise"),
])
def test_bad_options_are_one_line(options, said):
    with pytest.raises(ConfigError) as caught:
        probe_params(**options)
    assert said in str(caught.value) and "\n" not in str(caught.value)


def test_the_cli_reads_its_counts_through_probe_params(capsys, tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text("")
    monkeypatch.setenv("ENGINEDECK_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("ENGINEDECK_DATA_DIR", str(tmp_path / "data"))
    # before any engine is asked: the flag's value is refused with probe_params' words, exit 1, no traceback
    assert main(["probe", "nowhere", "m", "--requests", "many", "--no-discover"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "enginedeck: probe --requests wants a whole number, not 'many'"
