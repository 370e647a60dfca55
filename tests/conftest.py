"""Shared test fixtures and skip rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# One torch thread: the tests use small tensors, and torch's thread pool on a busy 2-core
# machine oversubscribes it badly (a 3 s training test took 150 s with 2 threads under
# load; the whole suite takes ~1 minute single-threaded). PNP_TEST_THREADS overrides.
torch.set_num_threads(int(os.environ.get("PNP_TEST_THREADS", "1")))

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    skip_data = pytest.mark.skip(reason=f"needs the shared data folder at {DATA}")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "data" in item.keywords and not DATA.is_dir():
            item.add_marker(skip_data)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture
def no_network(monkeypatch) -> list:
    """Block name resolution and connections; the list collects every attempt (a test asserts it stays empty)."""
    import socket

    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network use in a test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


@pytest.fixture
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"needs {DATA}")
    return DATA


os.environ.setdefault("HF_HUB_OFFLINE", "1")
