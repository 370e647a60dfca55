"""priors/download.py: published single files fetched from a local HTTP server on the loopback
address (progress, sha256, atomic rename, resume), and the end-to-end path through ``priors.load``."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading

import pytest
import torch

from pnp_restore import priors
from pnp_restore.errors import CheckpointError
from pnp_restore.priors import registry
from pnp_restore.priors.adm import build_adm
from pnp_restore.priors.download import fetch_file

TINY_ADM = dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult="1,2", attention_resolutions="16",
                num_head_channels=32, learn_sigma=True)


class Server:
    """Serves ``files`` ({path: bytes}) on 127.0.0.1; ``mode``: "ok", "cut" (announce the full length,
    send half, close), "norange" (ignore Range headers). Records the Range header of each request."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.mode, self.ranges = files, "ok", []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                data = owner.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                rng = self.headers.get("Range")
                owner.ranges.append(rng)
                start = int(rng.split("=")[1].rstrip("-")) if rng and owner.mode != "norange" else 0
                if start >= len(data) and rng:
                    self.send_error(416)
                    return
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if owner.mode == "cut" else body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def payload():
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(build_adm(TINY_ADM).state_dict(), buf)
    return buf.getvalue()


@pytest.fixture
def server(payload, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    srv = Server({"/tiny.pt": payload})
    yield srv
    srv.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_with_progress_and_sha256(server, payload, tmp_path, capsys):
    dest = fetch_file(f"{server.url}/tiny.pt", tmp_path / "w" / "tiny.pt", sha(payload))
    assert dest.read_bytes() == payload and not (tmp_path / "w" / "tiny.pt.part").exists()
    assert "tiny.pt" in capsys.readouterr().err  # the progress bar
    assert fetch_file(f"{server.url}/missing.pt", dest, "0" * 64) == dest  # installed: nothing fetched
    assert server.ranges == [None]


def test_sha256_mismatch_leaves_no_file(server, tmp_path):
    with pytest.raises(CheckpointError, match=r"tiny.pt from .* has sha256 [0-9a-f]{16}\.\.\., expected 0000000000000000\.\.\.: deleted it") as err:
        fetch_file(f"{server.url}/tiny.pt", tmp_path / "tiny.pt", "0" * 64, progress=False)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_unknown_sha256_is_said_to_be_skipped(server, payload, tmp_path):
    with pytest.warns(UserWarning, match="no published sha256 for tiny.pt: its integrity check is skipped"):
        fetch_file(f"{server.url}/tiny.pt", tmp_path / "tiny.pt", None, progress=False)
    assert (tmp_path / "tiny.pt").read_bytes() == payload


def test_interrupted_download_is_never_complete_and_resumes(server, payload, tmp_path):
    dest = tmp_path / "tiny.pt"
    server.mode = "cut"
    with pytest.raises(CheckpointError, match=r"download of .* stopped .*run again to resume it") as err:
        fetch_file(f"{server.url}/tiny.pt", dest, sha(payload), progress=False)
    assert "\n" not in str(err.value)
    part = tmp_path / "tiny.pt.part"
    assert not dest.exists() and 0 < part.stat().st_size < len(payload)
    kept = part.stat().st_size
    server.mode = "ok"
    fetch_file(f"{server.url}/tiny.pt", dest, sha(payload), progress=False)
    assert server.ranges[-1] == f"bytes={kept}-"  # resumed, not restarted
    assert dest.read_bytes() == payload and not part.exists()


def test_server_without_ranges_restarts_cleanly(server, payload, tmp_path):
    (tmp_path / "tiny.pt.part").write_bytes(b"garbage")
    server.mode = "norange"
    fetch_file(f"{server.url}/tiny.pt", tmp_path / "tiny.pt", sha(payload), progress=False)
    assert server.ranges == ["bytes=7-"] and (tmp_path / "tiny.pt").read_bytes() == payload


def test_unreachable_server_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(CheckpointError, match=r"download of http://127.0.0.1:\d+/x.pt stopped \(URLError") as err:
        fetch_file(f"http://127.0.0.1:{port}/x.pt", tmp_path / "x.pt", None, progress=False)
    assert "\n" not in str(err.value)


@pytest.fixture
def tiny_entry(server, payload, tmp_path, monkeypatch):
    monkeypatch.setenv(registry.HOME_ENV, str(tmp_path))
    entry = dict(registry.ENTRIES["imagenet256_uncond"], arch=TINY_ADM, filename="tiny.pt",
                 download=f"{server.url}/tiny.pt", sha256=sha(payload))
    monkeypatch.setitem(registry.ENTRIES, "tiny-adm", entry)
    return entry


def test_load_downloads_a_missing_preset(tiny_entry, tmp_path):
    prior = priors.load("tiny-adm")
    assert (tmp_path / "tiny.pt").is_file()
    assert prior.denoise(torch.rand(1, 3, 32, 32), 0.5).shape == (1, 3, 32, 32)
    assert {r["name"]: r for r in priors.available()}["tiny-adm"]["installed"]


def test_a_partial_download_is_not_installed(tiny_entry, server, tmp_path, monkeypatch):
    server.mode = "cut"
    with pytest.raises(CheckpointError, match="stopped"):
        priors.load("tiny-adm")
    assert not {r["name"]: r for r in priors.available()}["tiny-adm"]["installed"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline: the .part is not taken for the file
    with pytest.raises(CheckpointError, match=r"tiny.pt is not installed and offline mode is on: download .* and save it as"):
        priors.load("tiny-adm")


@pytest.mark.parametrize("how", ["env", "argument"])
def test_offline_opens_no_socket(tiny_entry, monkeypatch, no_network, how):
    attempts = no_network
    if how == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="offline mode is on") as err:
        priors.load("tiny-adm", offline=how == "argument" or None)
    assert "\n" not in str(err.value) and attempts == []


def test_presets_without_a_direct_url_say_where_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv(registry.HOME_ENV, str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert registry.ENTRIES["ffhq_10m"]["download"] is None
    with pytest.raises(CheckpointError, match=r"prior 'ffhq_10m' is not installed: download https://drive.google.com"):
        priors.load("ffhq_10m")
