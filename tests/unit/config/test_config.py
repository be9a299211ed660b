import os
import subprocess
import sys
from pathlib import Path

import pytest

from console.config import SLO, AuditConfig, Config, Timeouts, UIConfig, WireLimits, load_config
from console.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_missing_default_file_gives_defaults(tmp_path):
    cfg = load_config(None, env={"XDG_CONFIG_HOME": str(tmp_path)} | {"HOME": str(tmp_path)})
    assert isinstance(cfg, Config)


def test_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_env_var_names_the_file(tmp_path):
    p = write(tmp_path, '[[engines]]\nname = "a"\nurl = "http://127.0.0.1:1"\n')
    cfg = load_config(None, env={"ENGINEDECK_CONFIG": str(p)})
    assert [e.name for e in cfg.engines] == ["a"]


def test_full_engine_entry(tmp_path):
    p = write(tmp_path, """
request_timeout = 30
[[engines]]
name = "gpu1-vllm"
url = "https://gpu1:8000/"
kind = "vllm"
api_key_env = "VLLM_KEY"
verify_tls = false
connect_timeout = 1.5
[slo]
ttft_p90_s = 0.5
[ui]
theme = "light"
""")
    cfg = load_config(p)
    e = cfg.engines[0]
    assert (e.name, e.url, e.kind, e.api_key_env, e.verify_tls) == ("gpu1-vllm", "https://gpu1:8000", "vllm",
                                                                    "VLLM_KEY", False)
    assert e.timeouts.connect_s == 1.5 and e.timeouts.request_s == 30.0
    assert cfg.slo.ttft_p90_s == 0.5 and cfg.ui.theme == "light"


def test_corrupt_toml_names_file_and_line(tmp_path):
    p = write(tmp_path, '[[engines]]\nname = "a"\nurl = "http://x\n')
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert f"{p}:3:" in str(err.value)


@pytest.mark.parametrize("body, line, needle", [
    ('[[engines]]\nname = "a"\nurl = "ftp://x"\n', 3, "engines[0].url must start with http:// or https://"),
    ('[[engines]]\nname = "a"\nurl = "http://x"\nkind = "magic"\n', 4, "engines[0].kind 'magic' is not one of"),
    ('[[engines]]\nname = "a"\nurl = "http://x"\napi_key = "sk-123"\n', 4, "secrets are not kept"),
    ('[[engines]]\nname = "a"\nurl = "http://x"\n[[engines]]\nname = "a"\nurl = "http://y"\n', 5,
     "two engines are named 'a'"),
    ('[[engines]]\nname = "a"\n', 1, "[[engines]] has no `url`"),
    ('engines = 3\n', 1, "engines must be an array of tables"),
    ('ui = "dark"\n', 1, "ui must be a table"),
    ('[slo]\nttft_p90_s = "fast"\n', 2, "slo.ttft_p90_s must be a finite number, not 'fast'"),
    ('[slo]\nttft_p90_s = nan\n', 2, "slo.ttft_p90_s must be a finite number, not nan"),
    ('[ui]\npoll_interval_s = inf\n', 2, "ui.poll_interval_s must be a finite number, not inf"),
    ('[ui]\nascii = 1\n', 2, "ui.ascii must be true or false, not 1"),
    ('[ui]\ntheme = 1\n', 2, "ui.theme must be a string, not 1"),
    ('[ui]\npoll_interval_s = 0\n', 2, "ui.poll_interval_s must be at least 0.1, not 0.0"),
    ('# a comment\n\nidle_timeout = -1\n', 3, "idle_timeout must be at least 0.1"),
    ('[[engines]]\nname = "a"\nurl = "http://x"\nload_timeout = 0.01\n', 4,
     "engines[0].load_timeout must be at least 0.1"),
    ('[limits]\nline = "1 parsec"\n', 2, "limits.line must be a size"),
    ('[limits]\nline = 10\n', 2, "limits.line must be at least 1024 bytes"),
    ('[audit]\nretention_days = 0\n', 2, "audit.retention_days must be at least 1, not 0"),
    ('[audit]\nretention_days = 1.5\n', 2, "audit.retention_days must be a whole number, not 1.5"),
    ('[audit]\nmax_file_bytes = 100\n', 2, "audit.max_file_bytes must be at least 65536"),
    ('[slo]\nttft_p90_s = -1\n', 2, "slo.ttft_p90_s must be at least 0"),
    ('[slo]\nmax_error_rate = 2\n', 2, "slo.max_error_rate must be at most 1, not 2.0"),
])
def test_bad_values_are_one_clear_error_at_their_line(tmp_path, body, line, needle):
    p = write(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert str(err.value).startswith(f"{p}:{line}: ") and needle in str(err.value)


def test_sizes_paths_and_defaults_of_what_the_file_leaves_out(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = load_config(write(tmp_path, """
[[engines]]
name = "a"
url = "http://x"
api_key_file = "~/a.key"
[limits]
line = "2 MiB"
stream = 1048576
[audit]
max_file_bytes = "1 MiB"
"""), env={})
    assert cfg.limits.line_bytes == 2 * 1024 * 1024 and cfg.limits.stream_bytes == 1048576
    assert cfg.engines[0].limits == cfg.limits  # engines read within the file's limits
    assert cfg.engines[0].api_key_file == tmp_path / "a.key"
    assert cfg.audit.max_file_bytes == 1024 * 1024 and cfg.audit.retention_days == AuditConfig().retention_days
    assert cfg.slo == SLO() and cfg.ui == UIConfig() and cfg.limits.ps_bytes == WireLimits().ps_bytes


def test_an_engine_starts_from_the_top_level_timeouts(tmp_path):
    cfg = load_config(write(tmp_path, """
request_timeout = 12
load_timeout = 600
[[engines]]
name = "a"
url = "http://x"
idle_timeout = 7
[[engines]]
name = "b"
url = "http://y"
"""), env={})
    a, b = cfg.engines
    assert (a.timeouts.request_s, a.timeouts.idle_s, a.timeouts.load_s) == (12.0, 7.0, 600.0)
    assert b.timeouts == cfg.timeouts == Timeouts(request_s=12.0, load_s=600.0)


def test_api_key_from_env(tmp_path, monkeypatch):
    cfg = load_config(write(tmp_path, '[[engines]]\nname="a"\nurl="http://x"\napi_key_env="K_TEST"\n'))
    monkeypatch.setenv("K_TEST", " secret \n")
    assert cfg.engines[0].resolve_api_key() == "secret"
    monkeypatch.delenv("K_TEST")
    with pytest.raises(ConfigError, match="K_TEST, which is not set"):
        cfg.engines[0].resolve_api_key()


def test_key_file_must_be_private(tmp_path):
    key = tmp_path / "key"
    key.write_text("abc\n")
    cfg = load_config(write(tmp_path, f'[[engines]]\nname="a"\nurl="http://x"\napi_key_file="{key}"\n'))
    os.chmod(key, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        cfg.engines[0].resolve_api_key()
    os.chmod(key, 0o600)
    assert cfg.engines[0].resolve_api_key() == "abc"


def test_corrupt_config_cli_is_one_line_no_traceback_exit_2(tmp_path):
    p = write(tmp_path, "[[engines]\n")
    out = subprocess.run([sys.executable, "-m", "console", "--config", str(p), "engines"],
                         capture_output=True, text=True, env={**os.environ, "ENGINEDECK_DATA_DIR": str(tmp_path)})
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(p) in lines[0] and ":1:" in lines[0]
