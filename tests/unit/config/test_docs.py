"""docs/config.md names every key the file takes and every variable enginedeck reads."""

import re
from pathlib import Path

import console.config as config

DOC = (Path(__file__).resolve().parents[3] / "docs" / "config.md").read_text(encoding="utf-8")


def test_every_key_of_the_file_is_in_the_documented_example():
    example = DOC.split("```toml", 1)[1].split("```", 1)[0]
    written = set(re.findall(r"^#? ?\[*([a-z0-9_]+)\]*\s*(?:=|#|$)", example, flags=re.MULTILINE))
    assert set(config.file_keys()) - written == set()


def test_every_variable_is_in_the_table():
    variables = {value for name, value in vars(config).items() if name.startswith("ENV_")}
    assert len(variables) >= 7
    for var in variables:
        assert f"`{var}`" in DOC
