# shellcheck shell=bash
# Makes moto's S3 server (PyPI "moto[server]") available to the hf-media-sink-object S3 tests:
# installs it into target/moto-venv when missing, and exports HF_MEDIA_MOTO_SERVER.
#
# Source it (from the repository root or anywhere), before `cargo test`:
#
#     source .ci/moto.sh
#
# HF_MEDIA_MOTO_VENV overrides the venv's folder. Safe under `set -euo pipefail`; a second run
# reuses the venv.

_hf_moto_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_hf_moto_venv="${HF_MEDIA_MOTO_VENV:-$_hf_moto_root/target/moto-venv}"

if [ ! -x "$_hf_moto_venv/bin/moto_server" ]; then
  echo "== installing moto[server] into $_hf_moto_venv"
  if ! python3 -m venv "$_hf_moto_venv"; then
    # Debian's python3 keeps venv in a separate package.
    if command -v apt-get >/dev/null 2>&1; then
      apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$_hf_moto_venv"
    else
      echo "ci-moto.sh: python3 -m venv failed; install Python 3 with venv support" >&2
      return 1 2>/dev/null || exit 1
    fi
  fi
  "$_hf_moto_venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]>=5.2,<6"
fi

export HF_MEDIA_MOTO_SERVER="$_hf_moto_venv/bin/moto_server"
echo "== moto $("$_hf_moto_venv/bin/python" -c 'import moto; print(moto.__version__)'): HF_MEDIA_MOTO_SERVER=$HF_MEDIA_MOTO_SERVER"
unset _hf_moto_root _hf_moto_venv
