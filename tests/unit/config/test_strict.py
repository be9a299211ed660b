"""An unknown table or key in the config file is an error with the file, the line, the key and the nearest name."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from console.config import load_config
from console.errors import ConfigError

ENGINE = '[[engines]]\nname = "a"\nurl = "http://127.0.0.1:9"\n'


def error_of(tmp_path: Path, body: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    return str(err.value).removeprefix(f"{path}:")


@pytest.mark.parametrize("body, expected", [
    # The four cases of issue 11: each loaded without a word before.
    ('[[engine]]\nname = "a"\nurl = "http://x"\n', "1: unknown table [[engine]]: did you mean `engines`?"),
    ('[ui]\ntheme = "light"\npoll_intervall_s = 5\n',
     "3: unknown key `poll_intervall_s` in [ui]: did you mean `poll_interval_s`?"),
    ("read_onyl = true\n", "1: unknown key `read_onyl`: did you mean `read_only`?"),
    ('poll_intervall_s = 5\n', "1: unknown key `poll_intervall_s`: did you mean `poll_interval_s` (in [ui])?"),
    # A right name in the wrong table says where it belongs.
    ('theme = "light"\n', "1: unknown key `theme`: `theme` belongs in [ui]"),
    (ENGINE + "read_only = true\n", "4: unknown key `read_only` in [[engines]]: `read_only` belongs in the top level"),
    ('[slo]\nttft_p99_s = 2\n', "2: unknown key `ttft_p99_s` in [slo]: did you mean `ttft_p90_s`?"),
    ('[limits]\nlines = "1 MiB"\n', "2: unknown key `lines` in [limits]: did you mean `line`?"),
    ('[audit]\nretention = 30\n', "2: unknown key `retention` in [audit]: did you mean `retention_days`?"),
    ('[ui]\ntheme = "x"\n[ui.colours]\nprimary = "#fff"\n', "3: unknown table [ui.colours]"),
    (ENGINE + ENGINE.replace('"a"', '"b"') + "nmae = 'c'\n",
     "7: unknown key `nmae` in [[engines]]: did you mean `name`?"),
    ('[gateway]\nport = 1\n', "1: unknown table [gateway]: did you mean `gateways`?"),
    ('[gatway]\nport = 1\n', "1: unknown table [gatway]: did you mean `gateways`?"),
    ('[frontdoor]\nport = 1\n', "1: unknown table [frontdoor]: valid keys at the top level: engines, gateways, slo"),
    ('[ui]\ncolour = 1\n', "2: unknown key `colour` in [ui]: valid keys in [ui]: theme, ascii, poll_interval_s"),
    ('engines = [{ name = "a", url = "http://x", nick = "b" }]\n', "1: unknown key `nick` in [[engines]]"),
])
def test_unknown_names_are_refused_with_line_and_nearest_name(tmp_path, body, expected):
    assert error_of(tmp_path, body).startswith(expected)


def test_the_line_is_found_past_multi_line_strings_and_dotted_keys(tmp_path):
    body = 'ui.theme = "light"\nlog_note = """\n[[engine]]\nread_onyl = 1\n"""\n'
    assert error_of(tmp_path, body).startswith("2: unknown key `log_note`")
    body = '[[engines]]\nname = "a"\nurl = "http://x"\n\n[ui]\n"ascii" = true\nasci = true\n'
    assert error_of(tmp_path, body).startswith("7: unknown key `asci` in [ui]: did you mean `ascii`?")


def test_a_misspelt_read_only_no_longer_lets_a_load_through(tmp_path):
    """`read_onyl = true` was ignored, so `load` went ahead; now nothing runs and the exit code is 2."""
    config = tmp_path / "config.toml"
    config.write_text('read_onyl = true\n')
    env = {**os.environ, "ENGINEDECK_CONFIG": str(config), "ENGINEDECK_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "console", "load", "http://127.0.0.1:9", "m", "--no-discover"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"enginedeck: {config}:1: unknown key `read_onyl`: did you mean `read_only`?\n"
    assert not (tmp_path / "data").exists()  # nothing was opened, let alone recorded


def test_gateways_are_read_strictly(tmp_path):
    import pytest

    from console.config import load_config
    from console.errors import ConfigError

    def load(text: str):
        path = tmp_path / "c.toml"
        path.write_text(text)
        return load_config(path, env={})

    ok = load('[[gateways]]\nname = "a"\nlisten = "[::1]:8181"\nupstream = "http://127.0.0.1:1"\n'
              'log_max_bytes = "1 MiB"\n')
    assert ok.gateway("a") is not None and ok.gateways[0].log_max_bytes == 1 << 20
    for text, said in [
        ('[[gateways]]\nname = "a"\nlisten = "8181"\nupstream = "x"\n', "listen must be HOST:PORT"),
        ('[[gateways]]\nname = "a"\nlisten = "h:1"\nupstream = "x"\n[[gateways]]\nname = "a"\nlisten = "h:2"\n'
         'upstream = "x"\n', "two gateways are named 'a'"),
        ('[[gateways]]\nname = "a"\nlisten = "h:1"\nupstream = "x"\nkeys = "secret"\n', "unknown key `keys`"),
        ('[[gateways]]\nname = "a"\nlisten = "h:1"\nupstream = "x"\napi_key = "s"\n', "is a secret"),
        ('[[gateways]]\nname = "a"\nupstream = "x"\n', "has no `listen`"),
    ]:
        with pytest.raises(ConfigError, match=said):
            load(text)
