"""`enginedeck` against endpoints that attack at the HTTP level: peak RSS and time to exit, per command and attack.

    .venv/bin/python bench/hostile_wire.py [--timeout 5] [--kinds ollama,vllm] [--commands engines,models,...]
                                           [--attacks endless_json,drip,...]

Every attack of tests/fakes/wire_attacks.py (an endless body, one endless line, a byte every 0.3 s, a gzip bomb,
JSON nested 100 000 deep, a 1 000 000-digit number, lying lengths, broken chunking, not HTTP, a storm of 1xx
answers, a redirect loop) is served to the installed `enginedeck` command, configured with the engine's kind so
that detection does not stop it early, and `--timeout`. Peak RSS is the child's VmHWM (Linux's high-water mark of
its resident memory; ru_maxrss would count the forking parent's memory too), read every 10 ms until it exits;
time to exit is from spawn to exit. Targets (issue 11): peak RSS <= 300 MB, time to exit <= timeout + 2 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.wire_attacks import ATTACKS, COMMANDS, attack_server

RSS_TARGET_MB = 300
EXIT_MARGIN_S = 2.0


def run_one(exe: str, attack: str, kind: str, command: list[str], timeout_s: float, work: Path) -> tuple[int, float,
                                                                                                     float, str]:
    with attack_server(attack) as url:
        config = work / f"{kind}.toml"
        config.write_text(f'[[engines]]\nname = "bad"\nurl = "{url}"\nkind = "{kind}"\n')
        config.chmod(0o600)
        env = {**os.environ, "ENGINEDECK_DATA_DIR": str(work / "data"), "ENGINEDECK_CONFIG": str(config)}
        started = time.monotonic()
        with (work / "stderr").open("w+b") as stderr:
            child = subprocess.Popen([exe, "--no-discover", "--timeout", str(timeout_s), *command],
                                     stdout=subprocess.DEVNULL, stderr=stderr, env=env, cwd=work)
            peak_kb = 0
            while child.poll() is None:
                peak_kb = max(peak_kb, _high_water_kb(child.pid))
                time.sleep(0.01)
            elapsed = time.monotonic() - started
            stderr.seek(0)
            last = stderr.read().decode("utf-8", "replace").strip().splitlines()
    return child.returncode, elapsed, peak_kb / 1024, last[-1] if last else ""


def _high_water_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass  # it exited between poll() and here
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--kinds", default="ollama,vllm")
    parser.add_argument("--commands", default=",".join(COMMANDS))
    parser.add_argument("--attacks", default=",".join(sorted(ATTACKS)))
    parser.add_argument("--exe", default=str(Path(sys.executable).with_name("enginedeck")))
    parser.add_argument("--verbose", action="store_true", help="print each command's last line of stderr")
    args = parser.parse_args()
    worst_rss, worst_exit, misses = 0.0, 0.0, []
    print(f"enginedeck {args.exe}, --timeout {args.timeout:g}; targets: peak RSS <= {RSS_TARGET_MB} MB, "
          f"exit <= {args.timeout + EXIT_MARGIN_S:g} s; {os.cpu_count()} cores")
    print(f"{'attack':<15} {'kind':<7} {'command':<8} {'exit':>4} {'seconds':>8} {'peak MB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for attack in args.attacks.split(","):
            for kind in args.kinds.split(","):
                for name in args.commands.split(","):
                    code, elapsed, rss, last = run_one(args.exe, attack, kind, COMMANDS[name], args.timeout,
                                                       Path(tmp))
                    worst_rss, worst_exit = max(worst_rss, rss), max(worst_exit, elapsed)
                    missed = rss > RSS_TARGET_MB or elapsed > args.timeout + EXIT_MARGIN_S
                    if missed:
                        misses.append(f"{attack}/{kind}/{name}")
                    print(f"{attack:<15} {kind:<7} {name:<8} {code:>4} {elapsed:>8.2f} {rss:>8.1f}"
                          f"{'  MISSED' if missed else ''}", flush=True)
                    if args.verbose:
                        print(f"    {last[:200]}")
    print(f"worst peak RSS {worst_rss:.1f} MB (target <= {RSS_TARGET_MB}); worst time to exit {worst_exit:.2f} s "
          f"(target <= {args.timeout + EXIT_MARGIN_S:g}); missed: {', '.join(misses) or 'none'}")
    return 1 if misses else 0


if __name__ == "__main__":
    raise SystemExit(main())
