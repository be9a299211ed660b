"""`[fleet]`: the Prometheus address is a web address; a misspelt key names the nearest valid one."""

from __future__ import annotations

import pytest

from console.config import load_config
from console.errors import ConfigError


def test_fleet_settings_are_read(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[fleet]\nprometheus_url = "http://127.0.0.1:9090/"\nhost_name = "gpu-7"\n')
    fleet = load_config(path, env={}).fleet
    assert (fleet.prometheus_url, fleet.host_name) == ("http://127.0.0.1:9090", "gpu-7")


def test_a_prometheus_url_without_a_scheme_names_the_line(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('discover = false\n[fleet]\nprometheus_url = "127.0.0.1:9090"\n')
    with pytest.raises(ConfigError, match=r"c\.toml:3: fleet\.prometheus_url must start with http"):
        load_config(path, env={})


def test_a_misspelt_fleet_key_says_did_you_mean(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[fleet]\nprometheus_ur = "http://x"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert ":2: unknown key `prometheus_ur` in [fleet]" in str(err.value)
    assert "did you mean `prometheus_url`?" in str(err.value)
