"""Shared test fixtures and skip rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# One thread per test process: the suite runs as two pytest-xdist workers on 2 cores, and
# torch's own threads on top of them (or of any other load) oversubscribe the CPU badly
# (a 5 s training test took 150 s). PNP_TEST_THREADS overrides.
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
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"needs {DATA}")
    return DATA


os.environ.setdefault("HF_HUB_OFFLINE", "1")
