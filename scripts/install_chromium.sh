#!/usr/bin/env bash
# Debian's headless Chromium, for the labelling page's browser tests (Playwright drives it through
# executable_path; Playwright's own browser download needs a host these machines cannot reach).
# Idempotent: does nothing when chromium is already installed. Exit 0 with a message when it cannot
# act (not root, no apt): the browser tests then say why they skip (and fail under CI=true).
set -euo pipefail

if command -v chromium >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null || [[ $(id -u) -ne 0 ]]; then
    echo "install_chromium: chromium is missing and cannot be installed here (need root + apt)." >&2
    echo "install_chromium: install Debian's chromium package to run tests/test_labelling_browser.py." >&2
    exit 0
fi
echo "install_chromium: installing Debian's chromium (headless browser for the labelling page's tests)..."
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
echo "install_chromium: done ($(chromium --version 2>/dev/null || echo installed))."
