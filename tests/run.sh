#!/usr/bin/env bash
# The test command of the README: installs what the tests need, then runs them.
#   bash tests/run.sh [pytest arguments]
# Installs Debian's Dovecot (IMAP and LMTP) when missing, makes a virtual environment
# in .venv with the project and its test extras, then runs ruff and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

need_packages=()
for package in dovecot-imapd dovecot-lmtpd; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || need_packages+=("$package")
done
if [ ${#need_packages[@]} -gt 0 ]; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  echo "installing ${need_packages[*]} (Debian packages the tests run as real servers)"
  "${sudo_cmd[@]}" apt-get update -qq
  # Install without starting the system-wide service: the tests start private instances.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 "${sudo_cmd[@]}" apt-get install -y -qq \
    --no-install-recommends "${need_packages[@]}" >/dev/null
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
# Tests run the `spacebot` command this checkout installed, not another one on PATH.
export PATH="$PWD/.venv/bin:$PATH"

.venv/bin/ruff format --check .
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
