# shellcheck shell=bash
# Makes a Python with Hugging Face `datasets`, Pillow and the official `openai` client (PyPI) available to
# the hf-media-cli tests (and Playwright, for the gallery browser test): the batch tests load a batch's metadata.jsonl with
# `datasets.load_dataset("imagefolder", …)`, and the openai_client tests drive `hf-media serve` with the
# `openai` package. Installs them into target/py-venv when missing, and exports HF_MEDIA_PYTHON.
#
# Source it (from the repository root or anywhere), before `cargo test`:
#
#     source .ci/python.sh
#
# HF_MEDIA_PY_VENV overrides the venv's folder. Safe under `set -euo pipefail`; a second run reuses the
# venv (one `import` check, no pip call).

_hf_py_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_hf_py_venv="${HF_MEDIA_PY_VENV:-$_hf_py_root/target/py-venv}"

if ! "$_hf_py_venv/bin/python" -c 'import datasets, PIL, openai, playwright' >/dev/null 2>&1; then
  echo "== installing datasets, pillow, openai and playwright into $_hf_py_venv"
  if [ ! -x "$_hf_py_venv/bin/python" ] && ! python3 -m venv "$_hf_py_venv"; then
    # Debian's python3 keeps venv in a separate package.
    if command -v apt-get >/dev/null 2>&1; then
      apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$_hf_py_venv"
    else
      echo "ci-python.sh: python3 -m venv failed; install Python 3 with venv support" >&2
      return 1 2>/dev/null || exit 1
    fi
  fi
  "$_hf_py_venv/bin/pip" install --quiet --disable-pip-version-check "datasets>=3" pillow "openai>=2.8" "playwright>=1.40"
fi

export HF_MEDIA_PYTHON="$_hf_py_venv/bin/python"
echo "== datasets $("$HF_MEDIA_PYTHON" -c 'import datasets; print(datasets.__version__)'), openai $("$HF_MEDIA_PYTHON" -c 'import openai; print(openai.__version__)'): HF_MEDIA_PYTHON=$HF_MEDIA_PYTHON"
unset _hf_py_root _hf_py_venv
