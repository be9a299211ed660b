"""The core must stay usable without the UI: importing it may not pull in textual or rich."""

import subprocess
import sys

CORE = [
    "console.config", "console.errors", "console.engines.base", "console.engines.http", "console.engines.poll",
    "console.engines.registry", "console.engines.detect", "console.engines.ollama", "console.engines.openai",
    "console.engines.vllm", "console.engines.llamacpp", "console.engines.sglang", "console.engines.tgi",
    "console.engines.lmstudio", "console.engines.metrics", "console.store.db", "console.actions",
    "console.conversation", "console.telemetry.gpu", "console.telemetry.host", "console.telemetry.processes",
    "console.logs.sanitize", "console.audit.trail", "console.probe", "console.cli", "console.services",
    "console.present.format", "console.present.probe",
]


def test_core_imports_no_ui_library():
    # httpx's __init__ tries to import its own CLI (httpx._main: click, pygments, rich). click is not one of our
    # runtime dependencies (only import-linter brings it into the test venv), so on a user's install that import
    # fails early and rich is never loaded. Block click here to test what a user's install does.
    code = (
        "import importlib, sys\n"
        "sys.modules['click'] = None\n"
        f"for m in {CORE!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] in ('textual', 'rich') or m.startswith('console.ui.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core imported UI modules: {out.stdout.strip()}"


def test_import_linter_contracts():
    """The contracts of pyproject.toml (layers, who may import textual, rich, HTTP and SQL, no circles), checked
    statically over every module: imports inside functions and under TYPE_CHECKING count too."""
    out = subprocess.run([sys.executable, "-m", "importlinter.cli", "--no-cache"], capture_output=True, text=True)
    if "No module named" in out.stderr:
        out = subprocess.run(["lint-imports", "--no-cache"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
