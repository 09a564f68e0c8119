# Shared set-up for scripts/demo.sh (what drd and the demo need) and scripts/test.sh
# (that plus the test toolchain): system tools and the venv.
# Idempotent; on a fresh Debian 12 as root it installs what is missing.

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

# What the demo needs: the registry it runs three of. drd itself needs no system package.
runtime_packages() {
    [ -x /usr/bin/docker-registry ] || apt_install docker-registry || return 1
    # The Debian package starts its own registry on :5000 where systemd runs; the demo
    # and the tests use free ports on 127.0.0.1, so that service is left alone.
    /usr/bin/docker-registry --version
}

# What the tests need on top: an independent client, TLS material, the unit's scorer.
system_packages() {
    runtime_packages || return 1
    local wanted=()
    command -v skopeo >/dev/null 2>&1 || wanted+=(skopeo)
    command -v openssl >/dev/null 2>&1 || wanted+=(openssl)
    # systemd-analyze scores the unit's hardening in the tests.
    command -v systemd-analyze >/dev/null 2>&1 || wanted+=(systemd)
    # PostgreSQL's server binaries: the state tests start a throwaway cluster of their own.
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || wanted+=(postgresql)
    # libcrypt makes the bcrypt hashes of htpasswd test registries.
    { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q 'libcrypt\.so\.1' ||
        wanted+=(libcrypt1)
    if [ "${#wanted[@]}" -gt 0 ]; then
        apt_install "${wanted[@]}" || return 1
    fi
    skopeo --version
}

# .venv with drd installed (editable); `venv test` adds the test toolchain (.[test]).
venv() {
    local target=.
    [ "${1:-}" = test ] && target='.[test]'
    if [ ! -x .venv/bin/python ]; then
        local python=${PYTHON:-python3}
        if ! "${python}" -m venv .venv; then
            # Debian's python3 needs python3-venv for ensurepip.
            rm -rf .venv
            apt_install python3-venv || return 1
            "${python}" -m venv .venv || return 1
        fi
    fi
    # The build backend is chatty; keep its output for when the install fails.
    local log=.venv/install.log
    if ! .venv/bin/python -m pip install -q --disable-pip-version-check \
        -c constraints.txt -e "${target}" >"${log}" 2>&1; then
        cat "${log}" >&2
        return 1
    fi
}
