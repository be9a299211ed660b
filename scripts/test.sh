#!/usr/bin/env bash
# The test command: bash scripts/test.sh
# Builds or reuses .venv and the engine lab (scripts/lab.py), runs ruff, lint-imports (the import contracts in
# pyproject.toml: layers, no circles; docs/architecture.md) and mypy (pyproject.toml's [tool.mypy]), then pytest in
# three phases: everything but vLLM and the installed package first; then the installed package (tests/installed:
# one wheel built from the source, installed offline from a wheelhouse into a clean venv, run from outside the
# checkout); then the vLLM tests alone, so vLLM's heavy CPU use cannot disturb timing-sensitive tests.
# Under CI=true a missing engine lab fails the engine tests instead of skipping them.
set -uo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
results=()
failed=0

say() { printf 'test.sh: %s\n' "$*"; }
note() {  # note NAME EXIT_CODE
    if [ "$2" -eq 0 ]; then results+=("$1 ok"); else results+=("$1 FAILED ($2)"); failed=1; fi
}
summary() {
    local verdict=passed
    [ "$failed" -eq 0 ] || verdict=FAILED
    say "$verdict in $((SECONDS - started)) s: $(IFS=';'; echo "${results[*]}" | sed 's/;/; /g')"
}

if [ "${CI:-}" = "true" ]; then export ENGINEDECK_LAB_REQUIRED=1; fi

python=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $python"
    "$python" -m venv .venv || { note venv $?; summary; exit 1; }
fi
say "installing enginedeck and its test extras into .venv"
.venv/bin/python -m pip install -q -e '.[test]'
rc=$?; note install $rc
if [ $rc -ne 0 ]; then summary; exit 1; fi

say "engine lab setup (first time: ~10 min llama.cpp build, ~3 min vLLM)"
.venv/bin/python scripts/lab.py setup all
note lab-setup $?

say "ruff check ."
.venv/bin/ruff check .
note ruff $?

say "lint-imports (who may import whom, no circles: pyproject.toml, docs/architecture.md)"
.venv/bin/lint-imports --no-cache
note lint-imports $?

say "mypy (strict over console/; console/ui/'s known errors are listed in pyproject.toml)"
.venv/bin/mypy
note mypy $?

say "pytest, phase 1: everything but vLLM and the installed package"
.venv/bin/python -m pytest -m "not vllm and not installed"
note "pytest (not vllm)" $?

say "pytest, phase 2: the installed package (wheel, offline install into a clean venv, smoke tests)"
.venv/bin/python -m pytest -m installed tests/installed
note "pytest (installed)" $?

say "pytest, phase 3: vLLM (its server takes minutes to start)"
# Exit 5 (nothing collected) is a failure too: the vLLM tests exist, so none collected means they went missing.
.venv/bin/python -m pytest -m vllm
note "pytest (vllm)" $?

summary
exit "$failed"
