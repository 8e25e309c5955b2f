"""The config watcher (of the app in process): symlinked configs (a Kubernetes ConfigMap mount, a
link to a file elsewhere) reload, a save written in two parts is applied only whole, and a
fixed config clears the rejection it replaces."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx

from gateway.config.compiler import Runtime, compile_bytes
from gateway.server.app import create_app
from gateway.server.reload import GraphHolder, Reloader

from ..gateway_process import write_atomically


def config(model: str, extra: str = "") -> str:
    return f"""\
version: 1
providers:
  demo: {{type: mock}}
routes:
  live: {{target: {{provider: demo, model: {model}}}}}
{extra}"""


def ask(gw, model: str = "live") -> httpx.Response:
    return gw.post("/v1/chat/completions",
                   json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def wait_for_model(gw, model: str, timeout: float = 5.0) -> float:
    """Seconds until route ``live`` answers with ``model``; fails after ``timeout``."""
    start = time.monotonic()
    got = None
    while time.monotonic() - start < timeout:
        got = ask(gw).json().get("model")
        if got == model:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"live still answers {got!r}, not {model!r}, after {timeout}s:\n"
                         f"{gw.log()}")


def configmap_dir(root: Path, stamp: str, text: str) -> str:
    """A kubelet-style data folder ``..<stamp>`` holding gateway.yaml."""
    folder = root / f"..{stamp}"
    folder.mkdir()
    (folder / "gateway.yaml").write_text(text)
    return folder.name


def swap_data_link(root: Path, new: str) -> None:
    """What the kubelet does: a new ``..data`` link under a temporary name, renamed over."""
    os.symlink(new, root / "..data_tmp")
    os.replace(root / "..data_tmp", root / "..data")


def test_configmap_data_swap_reloads(tmp_path, gateway_app):
    """gateway.yaml -> ..data/gateway.yaml, ..data -> ..<stamp>: swapping ..data atomically
    (and deleting the old folder) reloads, and so does the swap after it."""
    mount = tmp_path / "config"
    mount.mkdir()
    first = configmap_dir(mount, "2026_12_05_a", config("v1"))
    os.symlink(first, mount / "..data")
    os.symlink("..data/gateway.yaml", mount / "gateway.yaml")
    gw = gateway_app(None, path=mount / "gateway.yaml")
    assert ask(gw).json()["model"] == "v1"
    for n, stamp in enumerate(["2026_12_05_b", "2026_12_05_c"], start=2):
        old = os.readlink(mount / "..data")
        swap_data_link(mount, configmap_dir(mount, stamp, config(f"v{n}")))
        shutil.rmtree(mount / old)
        wait_for_model(gw, f"v{n}", timeout=5)
        assert ask(gw).headers["x-gateway-config-version"] == str(n)


def test_symlink_target_edited_elsewhere_reloads(tmp_path, gateway_app):
    """gateway.yaml is a link to a file in another folder: edits to that file reload, both
    in place and by rename."""
    (tmp_path / "real").mkdir()
    (tmp_path / "served").mkdir()
    real = tmp_path / "real" / "gateway.yaml"
    real.write_text(config("v1"))
    link = tmp_path / "served" / "gateway.yaml"
    os.symlink(real, link)
    gw = gateway_app(None, path=link)
    real.write_text(config("v2"))
    wait_for_model(gw, "v2")
    write_atomically(real, config("v3"))
    wait_for_model(gw, "v3")


EXTRA = "  extra: {target: {provider: demo, model: x}}\n"


def test_a_save_paused_halfway_is_applied_only_whole(tmp_path, gateway_app):
    """The first half of a save is valid YAML on its own (route extra missing); written, then
    150 ms later the rest: only the whole file is ever applied."""
    path = tmp_path / "gateway.yaml"
    path.write_text(config("v1", EXTRA))
    gw = gateway_app(None, path=path)
    with open(path, "w") as fh:
        fh.write(config("v2"))
        fh.flush()
        time.sleep(0.15)
        fh.write(EXTRA)
    wait_for_model(gw, "v2")
    time.sleep(0.5)  # a late second reload would show here
    info = gw.get("/admin/config").json()
    assert info["version"] == 2 and "extra" in info["routes"], info
    assert info["reloads"]["applied"] == 1, info
    versions = gw.get("/admin/config/versions").json()
    assert [v["number"] for v in versions["versions"]] == [2, 1]
    stored = gw.get("/admin/config/versions/2").json()
    assert stored["text"] == config("v2", EXTRA)


BROKEN = config("v2", "  bad: {target: {provider: nowhere, model: x}}\n")


async def test_a_fixed_config_clears_the_rejection(tmp_path, capsys):
    """Rejected, then fixed: GET /admin/config shows no rejection any more and the log says
    which version is live (config_accepted). Also when the fix restores the running text."""
    path = tmp_path / "gateway.yaml"
    path.write_text(config("v1"))
    graph = compile_bytes(path.read_bytes(), str(path), version=1)
    reloader = Reloader(str(path), Runtime(), GraphHolder(graph))
    app = create_app(reloader, watch_config=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1") as client:
        for fixed in (config("v2"), config("v2")):  # the second fix leaves the file as served
            path.write_text(BROKEN)
            assert (await client.post("/admin/reload")).status_code == 422
            rejected = (await client.get("/admin/config")).json()
            assert rejected["last_rejection"] is not None
            capsys.readouterr()
            path.write_text(fixed)
            assert (await client.post("/admin/reload")).status_code == 200
            info = (await client.get("/admin/config")).json()
            assert info["last_rejection"] is None, info
            logged = capsys.readouterr()
            accepted = [line for line in (logged.out + logged.err).splitlines()
                        if "config_accepted" in line]
            assert len(accepted) == 1 and f"version={info['version']}" in accepted[0], logged
