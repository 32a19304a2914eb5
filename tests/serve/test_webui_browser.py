"""The web chat in a real headless browser (Debian's chromium, driven by Playwright): open the page,
send a message, and see the streamed answer the engine gives appear."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _browser() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium for this test")
        pytest.skip("chromium not installed (apt-get install chromium)")
    pytest.importorskip("playwright")
    pytest.importorskip("gradio")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_send_a_message_and_see_the_streamed_answer(reference, tmp_path):
    from playwright.sync_api import sync_playwright

    from glmtune.inference.engine import Engine
    from glmtune.inference.settings import GenerationSettings

    browser_path = _browser()
    model = reference / "checkpoints" / "chatglm2-mini"
    question = "你好"
    want = Engine.load(model, device="cpu").generate([[{"role": "user", "content": question}]],
                                                      GenerationSettings(temperature=0, max_new_tokens=8))[0].text
    port = free_port()
    log = tmp_path / "webui.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "glmtune", "webui", "--model", str(model), "--port", str(port),
                             "--temperature", "0", "--max-new-tokens", "8"], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env=env)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"web chat did not start:\n{log.read_text()}")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])  # fmt: skip
            page = browser.new_page()
            page.goto(url, wait_until="domcontentloaded")
            box = page.locator("textarea").first
            box.wait_for(timeout=60_000)
            box.fill(question)
            box.press("Enter")
            page.wait_for_function("text => document.body.innerText.includes(text)", arg=want, timeout=120_000)
            page.screenshot(path=str(tmp_path / "webui.png"))
            assert want in page.inner_text("body")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
