# shellcheck shell=bash
# Makes a headless browser available to the hf-media-cli gallery test (tests/gallery_browser.rs), which
# drives `hf-media serve`'s page with Playwright (installed by .ci/python.sh): installs Debian's
# `chromium` with apt-get when it is missing, and exports HF_MEDIA_CHROMIUM. Playwright's own browser
# downloads are never used: the test launches this chromium as Playwright's `executable_path`.
#
# Source it (from the repository root or anywhere), before `cargo test`:
#
#     source .ci/browser.sh
#
# HF_MEDIA_CHROMIUM, when already set to an executable, is kept. Safe under `set -euo pipefail`; a second
# run installs nothing.

# Debian's chromium: /usr/bin/chromium.
_hf_br_chromium="${HF_MEDIA_CHROMIUM:-}"
if [ -z "$_hf_br_chromium" ] || [ ! -x "$_hf_br_chromium" ]; then
  _hf_br_chromium="$(command -v chromium || true)"
fi
if [ -z "$_hf_br_chromium" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "== installing chromium (Debian) for the gallery browser test"
    # A fresh machine may have no package lists yet.
    if ! apt-get install -y -qq chromium >/dev/null 2>&1; then
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
    _hf_br_chromium="$(command -v chromium)"
  else
    echo "browser.sh: no chromium and no apt-get; install Chromium and set HF_MEDIA_CHROMIUM to it" >&2
    return 1 2>/dev/null || exit 1
  fi
fi

export HF_MEDIA_CHROMIUM="$_hf_br_chromium"
echo "== $("$HF_MEDIA_CHROMIUM" --version 2>/dev/null | head -n 1): HF_MEDIA_CHROMIUM=$HF_MEDIA_CHROMIUM"
unset _hf_br_chromium
