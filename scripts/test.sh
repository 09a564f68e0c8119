#!/usr/bin/env bash
# The one check sequence, locally and in CI: system tools, venv, lint, types, tests.
#
#   bash scripts/test.sh [pytest args...]
#
# Idempotent. On a fresh Debian 12 as root it installs what the tests need
# (docker-registry, skopeo, openssl) and creates .venv; elsewhere it only uses
# what is there. Every step runs even after an earlier one failed, so one run
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

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "need root for: $*" >&2
        return 1
    fi
}

apt_updated=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || {
        echo "missing $*, and no apt-get to install it with" >&2
        return 1
    }
    if [ "${apt_updated}" -eq 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || return 1
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

system_packages() {
    local wanted=()
    [ -x /usr/bin/docker-registry ] || wanted+=(docker-registry)
    command -v skopeo >/dev/null 2>&1 || wanted+=(skopeo)
    command -v openssl >/dev/null 2>&1 || wanted+=(openssl)
    # libcrypt makes the bcrypt hashes of htpasswd test registries.
    { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q 'libcrypt\.so\.1' ||
        wanted+=(libcrypt1)
    if [ "${#wanted[@]}" -gt 0 ]; then
        apt_install "${wanted[@]}" || return 1
    fi
    # The Debian package starts its own registry on :5000 where systemd runs; the tests
    # use free ports on 127.0.0.1, so that service is left alone.
    /usr/bin/docker-registry --version && skopeo --version
}

venv() {
    if [ ! -x .venv/bin/python ]; then
        local python=${PYTHON:-python3}
        if ! "${python}" -m venv .venv; then
            # Debian's python3 needs python3-venv for ensurepip.
            rm -rf .venv
            apt_install python3-venv || return 1
            "${python}" -m venv .venv || return 1
        fi
    fi
    .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
}

existing() {
    local dir
    for dir in "$@"; do
        [ -d "${dir}" ] && printf '%s\n' "${dir}"
    done
}

step "system packages" system_packages
step "virtualenv" venv
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
