import os
import subprocess
import sys
from pathlib import Path

import pytest

from console.config import Config, load_config
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


@pytest.mark.parametrize("body, needle", [
    ('[[engines]]\nname = "a"\nurl = "ftp://x"\n', "must start with http"),
    ('[[engines]]\nname = "a"\nurl = "http://x"\nkind = "magic"\n', "kind 'magic'"),
    ('[[engines]]\nname = "a"\nurl = "http://x"\napi_key = "sk-123"\n', "secrets are not kept"),
    ('[[engines]]\nname = "a"\nurl = "http://x"\n[[engines]]\nname = "a"\nurl = "http://y"\n', "two engines"),
    ('[slo]\nttft_p90_s = "fast"\n', "slo.ttft_p90_s must be a float"),
    ('[ui]\nascii = 1\n', "ui.ascii must be a bool"),
    ('[ui]\npoll_interval_s = 0\n', "ui.poll_interval_s must be at least 0.1, not 0.0"),
    ('idle_timeout = -1\n', "top level.idle_timeout must be at least 0.1"),
    ('[limits]\nline = "1 parsec"\n', "limits.line must be a size"),
    ('[limits]\nline = 10\n', "limits.line must be at least 1024 bytes"),
    ('[limits]\nlines = "1 MiB"\n', "limits.lines is not a limit"),
    ('[audit]\nretention_days = 0\n', "audit.retention_days must be at least 1, not 0"),
    ('[audit]\nmax_file_bytes = 100\n', "audit.max_file_bytes must be at least 65536"),
    ('[slo]\nttft_p90_s = -1\n', "slo.ttft_p90_s must be at least 0"),
])
def test_bad_values_are_one_clear_error(tmp_path, body, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(write(tmp_path, body))


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


def test_corrupt_config_cli_is_one_line_no_traceback(tmp_path):
    p = write(tmp_path, "[[engines]\n")
    out = subprocess.run([sys.executable, "-m", "console", "--config", str(p), "engines"],
                         capture_output=True, text=True, env={**os.environ, "ENGINEDECK_DATA_DIR": str(tmp_path)})
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(p) in lines[0] and ":1:" in lines[0]
