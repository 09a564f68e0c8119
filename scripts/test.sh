#!/usr/bin/env bash
# The one check sequence, locally and in CI: system tools, venv, lint, types, tests.
#
#   bash scripts/test.sh [pytest args...]
#
# Idempotent. On a fresh Debian 12 as root it installs what the tests need
# (docker-registry, skopeo, openssl, postgresql; chromium for the report test) and
# creates .venv; elsewhere it only uses what is there. Every step runs even after an
# earlier one failed, so one run
# reports everything; the exit status is non-zero if any step failed.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

failed=()
step() {
    local name=$1
    shift
    echo "==> ${name}"
    if ! "$@"; then
        echo "!!! ${name} failed" >&2
        failed+=("${name}")
    fi
}

source scripts/setup.sh

existing() {
    local dir
    for dir in "$@"; do
        [ -d "${dir}" ] && printf '%s\n' "${dir}"
    done
}

# Test-side only: the drill report is checked in a real browser (tests/drill/test_browser.py).
test_system_packages() {
    command -v chromium >/dev/null 2>&1 || apt_install chromium || return 1
    chromium --version
}

step "system packages" system_packages
step "test system packages" test_system_packages
step "virtualenv" venv test
if [ ! -x .venv/bin/python ]; then
    echo "no .venv: cannot run the checks" >&2
    exit 1
fi

mapfile -t lint_dirs < <(existing drd tests bench)
step "ruff format --check" .venv/bin/ruff format --check "${lint_dirs[@]}"
step "ruff check" .venv/bin/ruff check "${lint_dirs[@]}"
step "mypy" .venv/bin/mypy drd
step "pytest" .venv/bin/pytest -q "$@"

if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "all checks passed"
