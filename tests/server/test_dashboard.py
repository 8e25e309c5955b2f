"""/dashboard in a real browser: a real `gateway serve` with an admin token, scripted traffic
(answers, upstream failures, a reload), and Debian's chromium headless loading
/dashboard#token=... — the DOM must show the traffic in the charts and tables, the config's
history with its diff, and the failed requests. The screenshot is kept in tests/artifacts/."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from html import unescape
from pathlib import Path

import pytest

from gateway.builtin.dashboard import HEADERS

from .. import loopback
from ..gateway_process import write_atomically

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
TOKEN = "dash-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
CONFIG = """
version: 1
server: {{admin_token: {token}}}
defaults:
  retry: {{attempts: 1}}
providers:
  up: {{type: openai-compatible, base_url: "{url}"}}
pricing:
  "up/good": {{input: 1000, output: 1000}}
routes:
  chat: {{target: {{provider: up, model: good}}}}
  flaky: {{target: {{provider: up, model: bad}}}}
{extra}"""
HELLO = [{"role": "user", "content": "hello"}]
OK, FAILED = 6, 3


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is missing: `make test` installs it (apt-get install -y chromium)"
    return found


def browse(url: str, tmp_path: Path, *action: str) -> str:
    """chromium headless on ``url`` with a virtual time budget (the page's fetches finish
    within it), bounded in real time too."""
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=4000",
               "--window-size=1400,1300", *action, url]
    done = subprocess.run(command, capture_output=True, timeout=60, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def text_of(dom: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', dom, re.S)
    assert match, f"no #{element_id} in the page"
    return unescape(match.group(1)).strip()


@pytest.fixture
def traffic(gateway_factory, upstream, tmp_path):
    """A gateway after OK answers on chat, FAILED upstream 500s on flaky and one reload."""
    gw = gateway_factory(CONFIG.format(token=TOKEN, url=upstream.base_url, extra=""))
    upstream.script("bad", *([500] * FAILED))
    with gw.openai() as client:
        for _ in range(OK):
            client.chat.completions.create(model="chat", messages=HELLO)
    for _ in range(FAILED):
        assert gw.post("/v1/chat/completions", json={"model": "flaky", "messages": HELLO},
                       timeout=10).status_code == 500
    write_atomically(gw.config_path, CONFIG.format(
        token=TOKEN, url=upstream.base_url,
        extra="  added-later: {target: {provider: up, model: good}}\n"))
    deadline = time.monotonic() + 10
    while gw.get("/admin/config", headers=ADMIN, timeout=2).json()["version"] < 2:
        assert time.monotonic() < deadline, "the edited config was not applied"
        time.sleep(0.05)
    return gw


def test_dashboard_shows_the_traffic(traffic, tmp_path):
    """The page, given the token in its URL fragment, draws what the admin API says about the
    scripted traffic; the screenshot is saved as a test artifact."""
    url = f"{traffic.base_url}/dashboard#token={TOKEN}"
    dom = re.sub(r"<script>.*?</script>", "", browse(url, tmp_path, "--dump-dom"), flags=re.S)
    assert 'data-loaded="1"' in dom, dom[-3000:]
    assert text_of(dom, "version").startswith("config v2 ")
    targets = dict(re.findall(r'<tr data-target="([^"]+)" data-breaker="([^"]+)"', dom))
    assert targets == {"up/good": "closed", "up/bad": "closed"}
    good = re.search(r'<tr data-target="up/good".*?</tr>', dom, re.S).group(0)
    assert re.findall(r'<td class="num[^"]*">([^<]*)</td>', good)[:2] == [str(OK), "0"]
    assert {"chat", "flaky", "added-later"} <= set(re.findall(r'<tr data-route="([^"]+)"', dom))
    versions = re.findall(r'<li data-version="(\d+)"', dom)
    assert versions[:2] == ["2", "1"]
    assert text_of(dom, "diff-title") == "Changes v1 → v2"
    assert "+   added-later: {target: {provider: up, model: good}}" in unescape(dom)

    assert text_of(dom, "kpi-requests") == str(OK + FAILED)
    assert text_of(dom, "kpi-errors") == f"{round(FAILED / (OK + FAILED) * 100)}%"
    assert text_of(dom, "kpi-cost") != "$0.0000"
    total = re.search(r'id="chart-requests"[^>]*data-total="(\d+)"', dom)
    assert total and int(total.group(1)) == OK + FAILED
    assert re.search(r'id="chart-latency"[^>]*data-points="[1-9]', dom)
    assert re.search(r'id="chart-cost"[^>]*data-points="[1-9]', dom)
    assert "hidden" in re.search(r'<div id="stats-note"[^>]*>', dom).group(0)
    chat = re.search(r'<tr data-route="chat">.*?</tr>', dom, re.S).group(0)
    assert re.findall(r'<td class="num[^"]*">([^<]*)</td>', chat)[:2] == [str(OK), "0"]
    failures = re.findall(r'<tr data-request="([^"]+)"', dom)
    assert len(failures) == FAILED

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    browse(url, tmp_path, f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000


def test_dashboard_holds_no_data_and_the_api_wants_the_token(traffic):
    """The page is the same for everyone and carries no numbers; its script may talk only to
    this gateway (Content-Security-Policy); the API it reads refuses a caller without the
    token."""
    page = loopback.get(traffic.base_url + "/dashboard", timeout=5)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == HEADERS["Content-Security-Policy"]
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert "up/good" not in page.text and "flaky" not in page.text
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text)  # nothing from elsewhere
    for path in ("/admin/health", "/admin/config/versions", "/admin/config"):
        assert traffic.get(path, timeout=5).status_code == 401
