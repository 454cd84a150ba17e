"""Debian's chromium as the browser tests drive it (Playwright): its path, the flags that give it
a fake camera and microphone without prompts and keep it quiet, and the mark that skips a module
where it is not installed."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# A guest's page plays the call's audio before any tap (the SMS link's page has had none).
GUEST_ARGS = [*ARGS, "--autoplay-policy=no-user-gesture-required"]
needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="Debian's chromium is not installed (apt-get install -y chromium)"
)
