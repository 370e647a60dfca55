"""Fetching a prior that is not installed, when the machine is online and offline mode is off.

* Hugging Face models: ``huggingface_hub.snapshot_download`` into its usual cache, only the files
  a prior needs (:func:`hub_patterns`: model_index / configs / tokenizer, and one weight file per
  component: safetensors preferred, fp16 variants when the prior will run in half precision).
* Published single files (ADM ``.pt``): streamed from their URL into ``$PNP_RESTORE_HOME``
  (:func:`pnp_restore.priors.registry.weights_dir`) with a progress bar, into ``<name>.part``,
  checked (size; sha256 where the registry records one) and only then renamed to ``<name>``, so
  a partial download never looks complete. An interrupted download keeps its ``.part`` and the
  next attempt resumes it with an HTTP range request (or restarts if the server ignores ranges);
  a file whose sha256 does not match is deleted.

Offline mode: ``HF_HUB_OFFLINE=1`` (any of 1/on/yes/true) or ``offline=True``; then, as when the
network is unreachable, a missing prior fails at once with one line saying what to fetch.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterable
from pathlib import Path

from ..data import file_sha256
from ..errors import CheckpointError
from .checkpoints import first_line

CHUNK = 1 << 20
CONFIG_PATTERNS = ("model_index.json", "config.json", "*/config.json", "scheduler_config.json",
                   "scheduler/scheduler_config.json", "tokenizer/*")
COMPONENTS = ("", "unet", "vae", "vqvae", "text_encoder")  # the folders a prior reads weights from
WEIGHT_STEMS = ("diffusion_pytorch_model", "model")
WEIGHT_SUFFIXES = (".safetensors", ".fp16.safetensors", ".bin", ".fp16.bin")


def is_offline(offline: bool | None = None) -> bool:
    """True when ``offline`` is set or ``HF_HUB_OFFLINE`` is 1/on/yes/true (read at each call)."""
    return bool(offline) or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true")


def fetch_hint(hub_id: str) -> str:
    return (
        f"on a connected machine run `hf download {hub_id}` (huggingface-cli download with huggingface_hub < 1.0) "
        f"and copy its cache (~/.cache/huggingface/hub/models--{hub_id.replace('/', '--')}) to this machine's "
        "HF_HOME, or pass the downloaded folder to load()"
    )


def hub_patterns(files: Iterable[str], half: bool = False) -> list[str]:
    """``allow_patterns`` for a repo whose file list is ``files``: the configs and, per component
    folder, the first present of ``{stem}.safetensors``, ``{stem}.fp16.safetensors``, ``.bin``, ``.fp16.bin``
    (fp16 first when ``half``). Nothing else: no EMA / non-EMA duplicates, single-file ``.ckpt``
    exports, safety checkers or ONNX / Flax weights."""
    files = set(files)
    order = list(WEIGHT_SUFFIXES)
    if half:
        order = [".fp16.safetensors", ".safetensors", ".fp16.bin", ".bin"]
    chosen = []
    for folder in COMPONENTS:
        prefix = f"{folder}/" if folder else ""
        for stem in WEIGHT_STEMS:
            found = next((f"{prefix}{stem}{s}" for s in order if f"{prefix}{stem}{s}" in files), None)
            if found:
                chosen.append(found)
    return [*CONFIG_PATTERNS, *chosen]


def snapshot_complete(folder: Path) -> bool:
    """Whether a cached snapshot has a config and a weight file for each model component it needs
    (those named in ``model_index.json``, else the folder itself) and its tokenizer; an interrupted
    ``snapshot_download`` leaves a snapshot without some of them."""
    from .checkpoints import read_config

    index = read_config(folder / "model_index.json") if (folder / "model_index.json").is_file() else None
    parts = [c for c in COMPONENTS if c and (index or {}).get(c)] if index is not None else [""]
    for part in parts:
        sub = folder / part
        if not (sub / "config.json").is_file() or not any(
            (sub / f"{stem}{suffix}").is_file() for stem in WEIGHT_STEMS for suffix in WEIGHT_SUFFIXES
        ):
            return False
    return not (index or {}).get("tokenizer") or any((folder / "tokenizer").glob("*"))


def hub_snapshot(hub_id: str, *, offline: bool | None = None, half: bool = False) -> Path:
    """Local folder of hub repo ``hub_id``: the cached snapshot if complete (:func:`snapshot_complete`)
    or offline, else downloaded now (see the module docstring; completes an interrupted snapshot).

    Raises:
        CheckpointError: one line; not cached while offline, or the download failed.
    """
    from .registry import hub_folder

    folder = hub_folder(hub_id)
    if folder is not None and (is_offline(offline) or snapshot_complete(folder)):
        return folder  # offline, an incomplete snapshot fails in its loader with what is missing
    if is_offline(offline):
        raise CheckpointError(f"{hub_id} is not in the local Hugging Face cache and offline mode is on: {fetch_hint(hub_id)}")
    import huggingface_hub

    try:
        patterns = hub_patterns(huggingface_hub.list_repo_files(hub_id), half)
        return Path(huggingface_hub.snapshot_download(hub_id, allow_patterns=patterns))
    except Exception as e:  # RepositoryNotFoundError, HTTP / connection errors...
        raise CheckpointError(
            f"cannot download {hub_id} ({first_line(e)}); check the id and the network, or {fetch_hint(hub_id)}"
        ) from None


def _lock(f) -> None:
    """Exclusive lock on the open ``.part`` file so that two processes never write it together."""
    try:
        import fcntl
    except ImportError:  # Windows: no locking
        return
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise CheckpointError(f"another process is downloading {f.name}; wait for it to finish, then load again") from None


def _stream(url: str, f, name: str, progress: bool, timeout: float) -> int | None:
    """Append ``url`` to the open file ``f``, resuming at its current size; returns the full size if known."""
    from tqdm import tqdm

    start = f.seek(0, os.SEEK_END)
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # nothing left to fetch: the part holds the whole file
            return None
        raise
    with response:
        if start and response.status != 206:  # the server ignored the range: start over
            f.seek(0)
            f.truncate()
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        with tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                  disable=not progress, leave=False) as bar:
            for block in iter(lambda: response.read(CHUNK), b""):
                f.write(block)
                bar.update(len(block))
    return total


def fetch_file(url: str, dest: Path, sha256: str | None = None, *, offline: bool | None = None,
               progress: bool = True, timeout: float = 60.0, manual: str = "") -> Path:
    """``dest``, downloading ``url`` to it first if it is missing (see the module docstring).

    Args:
        sha256: expected hex digest; None skips the check (with a warning saying so).
        manual: what to do by hand, for the offline message.

    Raises:
        CheckpointError: one line; offline, network failure or short read (the ``.part`` is kept
            for resuming), sha256 mismatch (the file is deleted).
    """
    dest = Path(dest)
    if dest.is_file():
        return dest
    manual = manual or f"download {url} and save it as {dest}"
    if is_offline(offline):
        raise CheckpointError(f"{dest.name} is not installed and offline mode is on: {manual}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with open(part, "ab") as f:
        _lock(f)
        try:
            total = _stream(url, f, dest.name, progress, timeout)
        except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, IncompleteRead
            raise CheckpointError(
                f"download of {url} stopped ({first_line(e)}); run again to resume it (kept {part}), or {manual}"
            ) from None
        f.flush()
        size = f.tell()
        if total is not None and size != total:
            raise CheckpointError(f"download of {url} stopped at {size} of {total} bytes; run again to resume it (kept {part})")
        if sha256 is None:
            warnings.warn(f"no published sha256 for {dest.name}: its integrity check is skipped", stacklevel=2)
        else:
            found = file_sha256(part)
            if found != sha256.lower():
                part.unlink()
                raise CheckpointError(
                    f"{dest.name} from {url} has sha256 {found[:16]}..., expected {sha256[:16]}...: deleted it; "
                    f"try again, or {manual}"
                )
        os.replace(part, dest)
    return dest


__all__ = ["is_offline", "hub_snapshot", "hub_patterns", "fetch_file", "fetch_hint", "snapshot_complete"]
