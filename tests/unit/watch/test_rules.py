"""The rules file: a schema with clear errors (the file, the line, the key, did you mean), like the config."""

from __future__ import annotations

import pytest

from console.errors import ConfigError
from console.watch.rules import load_rules

GOOD = """\
interval = 5

[[rule]]
name = "hot"
metric = "gpu_temperature"
above = 85
for = 120
gpu = 0
command = ["/usr/bin/logger", "-t", "enginedeck"]

[[rule]]
name = "down"
metric = "engine_down"
engine = "vllm-a"

[[rule]]
name = "cpu"
metric = "finding"
kind = "partly_on_cpu"
"""


def write(tmp_path, text):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return path


def test_a_good_file_reads_whole(tmp_path):
    rules = load_rules(write(tmp_path, GOOD))
    assert rules.interval_s == 5 and [r.name for r in rules.rules] == ["hot", "down", "cpu"]
    hot = rules.rules[0]
    assert (hot.above, hot.for_s, hot.gpu, hot.command) == (85.0, 120.0, 0, ("/usr/bin/logger", "-t", "enginedeck"))
    assert rules.rules[2].above is None  # a finding fires on any (above 0)


@pytest.mark.parametrize(("text", "expected"), [
    ('[[rule]]\nname = "a"\nmetric = "waiting"\nabove = 3\nfro = 10\n',
     r"rules\.toml:5: unknown key `fro` in \[\[rule\]\]: did you mean `for`\?"),
    ('[[rule]]\nname = "a"\nmetric = "gpu_temp"\nabove = 3\n',
     r"rules\.toml:3: rule\[0\]\.metric 'gpu_temp' is not one of engine_down, vram_percent"),
    ('[[rule]]\nname = "a"\nmetric = "waiting"\n', r"rules\.toml:1: rule 'a': metric waiting needs `above`"),
    ('[[rule]]\nname = "a"\nmetric = "waiting"\nabove = "lots"\n',
     r"rules\.toml:4: rule\[0\]\.above must be a finite number, not 'lots'"),
    ('[[rule]]\nname = "a"\nmetric = "waiting"\nabove = 1\ngpu = 0\n',
     r"rules\.toml:5: rule 'a': waiting cannot be narrowed by `gpu`: waiting takes engine"),
    ('[[rule]]\nname = "a"\nmetric = "engine_down"\nabove = 1\n',
     r"rules\.toml:4: rule 'a': engine_down takes no `above`"),
    ('[[rule]]\nname = "a"\nmetric = "engine_down"\n[[rule]]\nname = "a"\nmetric = "engine_down"\n',
     r"rules\.toml:5: two rules are named 'a'"),
    ('[[rule]]\nname = "a"\nmetric = "engine_down"\ncommand = "rm -rf /"\n',
     r"rules\.toml:4: rule\[0\]\.command must be an array of strings"),
    ('[[rule]]\nname = "a"\nmetric = "waiting"\nabove = 1\nfor = -1\n',
     r"rules\.toml:5: rule\[0\]\.for must be at least 0"),
    ('[[rule]]\nmetric = "waiting"\nabove = 1\n', r"rules\.toml:1: \[\[rule\]\] has no `name`"),
    ('interval = 5\n', r"the rules file has no rule"),
    ('[[rules]]\nname = "a"\n', r"unknown table \[\[rules\]\]: did you mean `rule`\?"),
    ('[[rule]\n', r"rules\.toml:1: invalid TOML"),
])
def test_each_mistake_is_one_clear_line(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=expected):
        load_rules(write(tmp_path, text))


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match=r"rules file .* does not exist"):
        load_rules(tmp_path / "nope.toml")
