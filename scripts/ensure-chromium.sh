#!/bin/sh
# Make sure a Chromium is there for the 3D viewer's browser test (tests/web/test_viewer.py).
# Installs Debian's `chromium` when it is missing and this runs as root with apt-get; otherwise it only
# warns, and the test skips (or fails under LUMI_REQUIRE_BROWSER=1).
set -u
for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then
        exit 0
    fi
done
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium for the 3D viewer test (apt-get)..." >&2
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
        exit 0
    fi
    echo "warning: installing chromium failed; the 3D viewer browser test will be skipped" >&2
else
    echo "warning: no chromium, and not root with apt-get; the 3D viewer browser test will be skipped" >&2
fi
exit 0
