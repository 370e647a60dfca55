"""Image, mask and sidecar I/O for the command line (OpenCV based).

Conventions (scikit-image style, explicit ranges):

* :func:`read_image` returns a float32 tensor of shape (1, C, H, W) in [0, 1]
  with C = 1 (grayscale) or 3 (RGB). 8-bit images are divided by 255, 16-bit
  ones by 65535, float TIFFs are clipped to [0, 1]. An alpha channel is split
  off into :class:`ImageMeta` so that :func:`write_image` can pass it through.
* :func:`write_image` writes with the bit depth of the input (8 or 16 bits;
  formats that only hold 8 bits, e.g. JPEG, get 8), atomically: the file is
  encoded into a temporary file ``.<name>.pnp-restore-tmp-<pid>`` in the same
  folder and moved into place with :func:`os.replace`, so a crash never leaves a
  half-written image. :class:`OutputSet` does the same for several files at
  once (all are written or none), and :func:`remove_stale_temporaries` deletes
  the temporaries a killed process left behind.
* Masks on disk follow the CLI convention "white = pixels to fill"; in memory
  the library convention is "1 = observed" (see :func:`read_mask`).

EXIF orientation is not applied: pixels are read as stored.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .errors import PnPRestoreError, ShapeError

Tensor = torch.Tensor

#: extensions whose OpenCV encoders only store 8-bit samples and no alpha.
_EIGHT_BIT_ONLY = {".jpg", ".jpeg", ".jpe", ".bmp", ".webp", ".ppm", ".pgm"}
_NO_ALPHA = {".jpg", ".jpeg", ".jpe", ".bmp", ".ppm", ".pgm"}

#: marks this tool's temporary files: ``.<name>.pnp-restore-tmp-<pid>``.
TMP_MARK = ".pnp-restore-tmp-"


class ImageIOError(PnPRestoreError, OSError):
    """An image cannot be read or written (missing, unreadable, unsupported)."""


class OutputExistsError(ImageIOError, FileExistsError):
    """An output file exists and overwriting was not allowed."""


@dataclasses.dataclass
class ImageMeta:
    """What :func:`read_image` found out about a file, for writing the result back.

    Attributes:
        path: the file that was read.
        bit_depth: 8, 16 or 32 (float TIFF) bits per sample.
        channels: colour channels of the file without alpha (1 or 3).
        alpha: (H, W) float32 alpha in [0, 1], or None.
    """

    path: str = ""
    bit_depth: int = 8
    channels: int = 3
    alpha: np.ndarray | None = None


def read_image(path: str | os.PathLike) -> tuple[Tensor, ImageMeta]:
    """Read an 8/16-bit (or float TIFF) grayscale, RGB or RGBA image.

    Returns:
        ``(x, meta)``: x of shape (1, C, H, W), float32 in [0, 1], RGB channel
        order (OpenCV's BGR is converted), C = 1 or 3; ``meta.alpha`` holds the
        alpha channel, if any.

    Raises:
        ImageIOError: the file is missing, unreadable or of an unsupported type.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageIOError(f"{path}: no such file; check the path")
    try:
        data = np.fromfile(path, dtype=np.uint8)  # imdecode also handles non-ASCII paths
        arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except (OSError, cv2.error) as err:
        raise ImageIOError(f"{path}: cannot be read ({err}); check the file") from err
    if arr is None:
        raise ImageIOError(f"{path}: not an image OpenCV can read; use PNG, TIFF or JPEG")

    if arr.dtype == np.uint8:
        bits, scale = 8, 255.0
    elif arr.dtype == np.uint16:
        bits, scale = 16, 65535.0
    elif arr.dtype in (np.float32, np.float64):
        bits, scale = 32, 1.0
    else:
        raise ImageIOError(f"{path}: {arr.dtype} samples are not supported; save it as 8- or 16-bit PNG or TIFF")
    img = np.clip(arr.astype(np.float32) / scale, 0.0, 1.0)

    alpha = None
    if img.ndim == 2:
        img = img[..., None]
    elif img.shape[2] == 4:
        img, alpha = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB), img[..., 3].copy()
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.shape[2] == 2:  # gray + alpha, as some decoders return it
        img, alpha = img[..., :1], img[..., 1].copy()
    else:
        raise ImageIOError(f"{path}: {img.shape[2]} channels are not supported; use gray, RGB or RGBA")
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
    return x, ImageMeta(path=str(path), bit_depth=bits, channels=x.shape[1], alpha=alpha)


def write_image(
    path: str | os.PathLike,
    x: Tensor,
    meta: ImageMeta | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an image in [0, 1] with the bit depth and alpha of ``meta``.

    Args:
        path: output file; the extension picks the format (PNG/TIFF keep 16 bits
            and alpha; JPEG stores 8 bits without alpha, with a warning).
        x: (1, C, H, W) or (C, H, W) tensor, C = 1 or 3, values clipped to [0, 1].
        meta: from :func:`read_image`; ``None`` writes 8 bits without alpha.
            An alpha of another size than ``x`` (super-resolution) is resized
            bicubically with OpenCV.
        overwrite: replace an existing file; otherwise raise
            :class:`OutputExistsError` before writing anything.

    Returns:
        the path written.
    """
    path = Path(path)
    check_writable(path, overwrite)
    _atomic_write(path, encode_image(path, x, meta), overwrite)
    return path


def encode_image(path: str | os.PathLike, x: Tensor, meta: ImageMeta | None = None) -> bytes:
    """The bytes :func:`write_image` would write to ``path`` (format from its extension)."""
    path = Path(path)
    meta = meta or ImageMeta()
    check_image_format(path)
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ShapeError(f"write_image writes one image; got a batch of {x.shape[0]}; write x[i:i+1] in a loop")
        x = x[0]
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        raise ShapeError(f"write_image expects (1, C, H, W) with C = 1 or 3; got {tuple(x.shape)}")
    img = x.detach().to("cpu", torch.float32).clamp(0, 1).permute(1, 2, 0).numpy()
    if img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ext = path.suffix.lower()

    alpha = meta.alpha
    if alpha is not None and ext in _NO_ALPHA:
        warnings.warn(f"{path.name}: {ext} cannot store alpha; it is dropped (write PNG to keep it)", stacklevel=3)
        alpha = None
    if alpha is not None:
        h, w = img.shape[:2]
        if alpha.shape != (h, w):
            alpha = np.clip(cv2.resize(alpha, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)
        if img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        img = np.concatenate([img, alpha[..., None]], axis=2)

    bits = meta.bit_depth
    if bits == 32 and ext not in (".tif", ".tiff"):
        bits = 16
    if bits == 16 and ext in _EIGHT_BIT_ONLY:
        warnings.warn(f"{path.name}: {ext} stores 8 bits per sample; the 16-bit input is written as 8-bit", stacklevel=3)
        bits = 8
    if bits == 8:
        img = np.round(img * 255.0).astype(np.uint8)
    elif bits == 16:
        img = np.round(img * 65535.0).astype(np.uint16)
    try:
        ok, buf = cv2.imencode(ext, np.squeeze(img, axis=2) if img.shape[2] == 1 else img)
    except cv2.error as err:
        raise ImageIOError(f"{path}: cannot encode {ext!r} images ({err}); use .png or .tif") from None
    if not ok:
        raise ImageIOError(f"{path}: cannot encode {ext!r} images; use .png or .tif")
    return buf.tobytes()


def check_image_format(path: str | os.PathLike) -> None:
    """Raise :class:`ImageIOError` if OpenCV has no writer for ``path``'s extension."""
    path = Path(path)
    if not cv2.haveImageWriter("x" + path.suffix):
        what = f"{path.suffix!r} is not an image format" if path.suffix else "a name without extension is not an image file"
        raise ImageIOError(f"{path}: {what} OpenCV can write; use .png, .tif or .jpg")


def read_mask(
    path: str | os.PathLike,
    like: Tensor | tuple[int, ...],
    invert: bool = False,
    resize: bool = False,
    threshold: float = 0.0,
) -> Tensor:
    """Read an inpainting mask and return it in the library convention.

    On disk, white marks the pixels to fill (missing) and black the observed
    ones; ``invert=True`` reads the opposite (white = observed). Colour masks are
    averaged over channels. A pixel is missing where its "fill" intensity (the
    value, or 1 - value with ``invert``) is above ``threshold``: with the default
    0 every pixel that is not pure black (pure white with ``invert``) is filled,
    so the anti-aliased edges an editor paints around a stroke, which are
    partly damaged, are not kept as observed. A non-binary mask gives a warning.

    Args:
        path: mask image (any format :func:`read_image` reads; alpha is ignored).
        like: the image (B, C, H, W) or its shape; the mask must have its H, W.
        invert: white = observed instead of white = missing.
        resize: resize a mask of another size (bilinear, then thresholded)
            instead of raising :class:`ShapeError`.
        threshold: in [0, 1); fill intensities above it are missing.

    Returns:
        (1, 1, H, W) float32 tensor, 1 = observed, 0 = missing.
    """
    from .operators import mask_from_image

    m = read_image(path)[0][0].mean(dim=0).numpy()
    if bool(((m > 0) & (m < 1)).any()):
        warnings.warn(
            f"{Path(path).name} is not binary; pixels with fill intensity above {threshold:g} are filled "
            "(--mask-threshold)", stacklevel=2)
    h, w = (like.shape if isinstance(like, Tensor) else tuple(like))[-2:]
    if m.shape != (h, w):
        if not resize:
            raise ShapeError(
                f"{Path(path).name} is {m.shape[1]}x{m.shape[0]} but the image is {w}x{h} (WxH); "
                "pass --resize-mask (resize=True) or use a mask of the image's size"
            )
        m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
    # mask_from_image reads white = observed, the library convention.
    return mask_from_image(m, invert=not invert, threshold=threshold)


def write_sidecar(path: str | os.PathLike, *, overwrite: bool = False, **record: Any) -> Path:
    """Write a JSON record of how an output was made, atomically (fields: :func:`sidecar_bytes`)."""
    path = Path(path)
    _atomic_write(path, sidecar_bytes(**record), overwrite)
    return path


def sidecar_bytes(
    *,
    command: str | list[str] | None = None,
    solver: str,
    prior: str,
    seed: int | None,
    steps: int | None,
    sigma_y: float,
    nfe: int | None = None,
    time_s: float | None = None,
    **extra: Any,
) -> bytes:
    """The JSON record of how an output was made, as UTF-8 bytes.

    Keys: ``command`` (the command line; ``sys.argv`` by default), ``solver``,
    ``prior``, ``seed``, ``steps``, ``sigma_y`` ([0, 1] scale), ``version``
    (of pnp-restore), ``nfe`` (denoiser calls), ``time_s`` (seconds), plus any
    ``extra`` JSON-serialisable fields (input file, operator settings, ...).
    """
    from . import __version__

    if command is None:
        command = sys.argv
    if not isinstance(command, str):
        import shlex

        command = shlex.join(str(c) for c in command)
    record = {
        "command": command,
        "solver": solver,
        "prior": prior,
        "seed": seed,
        "steps": steps,
        "sigma_y": sigma_y,
        "version": __version__,
        "nfe": nfe,
        "time_s": time_s,
        **extra,
    }
    return (json.dumps(record, indent=2, default=str) + "\n").encode("utf-8")


def check_writable(path: str | os.PathLike, overwrite: bool = False) -> None:
    """Raise :class:`OutputExistsError` if ``path`` exists and ``overwrite`` is False."""
    path = Path(path)
    if path.is_dir():
        raise ImageIOError(f"{path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")


class InputFiles:
    """The input files of a run, each resolved and identified once, for :func:`check_output`.

    A path is an input when it resolves to the same path, or names the same file through a
    symbolic or hard link (the same device and inode, as :func:`os.path.samefile` compares).
    """

    def __init__(self, paths: Sequence[str | os.PathLike] = ()) -> None:
        self._files = [(p, Path(p).resolve(), _file_id(p)) for p in paths]

    def holding(self, path: Path, target: Path) -> str | os.PathLike | None:
        """The input that ``path`` (resolved: ``target``) is, if any."""
        out_id = _file_id(path)
        for src, resolved, src_id in self._files:
            if target == resolved or (out_id is not None and out_id == src_id):
                return src
        return None


def _file_id(path: str | os.PathLike) -> tuple[int, int] | None:
    """(device, inode) of the file ``path`` names, following links; None if it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_output(
    path: str | os.PathLike, overwrite: bool = False, inputs: Sequence[str | os.PathLike] | InputFiles = ()
) -> Path:
    """Check, before any work, that ``path`` can be written; returns it resolved.

    Raises :class:`ImageIOError` (or :class:`OutputExistsError`) if ``path`` is
    a folder, exists without ``overwrite``, is one of ``inputs`` (same resolved
    path, also through symbolic or hard links: never replace an input, whatever
    the flags), or lies below a file or in a folder that is not writable. Pass an
    :class:`InputFiles` when checking many outputs against the same inputs.
    """
    path = Path(path)
    target = path.resolve()
    src = (inputs if isinstance(inputs, InputFiles) else InputFiles(inputs)).holding(path, target)
    if src is not None:
        raise ImageIOError(f"output {path} would replace the input {src}; choose another output with -o")
    check_writable(path, overwrite)
    folder = next((f for f in (path.parent, *path.parent.parents) if f.exists()), Path("."))
    if not folder.is_dir():
        raise ImageIOError(f"{folder} is a file, so {path} cannot be created there; choose another output with -o")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ImageIOError(f"cannot write into {folder} (permission denied); choose another output with -o")
    return target


def describe_os_error(err: OSError, path: str | os.PathLike | None = None) -> str:
    """One line for a failed file operation: what happened to which file, and what to do."""
    name = path if path is not None else (err.filename or "a file")
    what = err.strerror or str(err) or type(err).__name__
    advice = {
        errno.ENOSPC: "free some disk space or write elsewhere with -o",
        errno.EDQUOT: "free some disk space or write elsewhere with -o",
        errno.EACCES: "check the permissions or choose another path",
        errno.EPERM: "check the permissions or choose another path",
        errno.EROFS: "choose a writable location",
        errno.ENOENT: "check the path",
    }.get(err.errno, "check the path and the disk")
    return f"{name}: {what}; {advice}"


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete this tool's temporaries in ``folder`` whose process is gone (killed mid-write).

    Returns:
        the files removed.
    """
    removed = []
    for tmp in Path(folder).glob(f".*{TMP_MARK}*"):
        pid = tmp.name.rpartition(TMP_MARK)[2]
        if pid.isdigit() and not _alive(int(pid)):
            try:
                tmp.unlink()
            except OSError:
                continue
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class OutputSet:
    """Files written together: all of them, or none.

    :meth:`add` writes each file to a temporary beside its destination (creating
    missing folders); :meth:`commit` moves them all into place. Any error, in
    ``add``, ``commit`` or the ``with`` block, removes the temporaries, the files
    already moved and the folders created (files that ``overwrite`` replaced
    are gone, though).

    Example::

        with OutputSet(overwrite=False) as out:
            out.add(Path("a.png"), png_bytes)
            out.add(Path("a.json"), json_bytes)
        # both written here, or neither
    """

    def __init__(self, overwrite: bool = False) -> None:
        self.overwrite = overwrite
        self._staged: list[tuple[Path, Path]] = []
        self._done: list[Path] = []
        self._folders: list[Path] = []

    def add(self, path: str | os.PathLike, data: bytes) -> None:
        path = Path(path)
        check_writable(path, self.overwrite)
        try:
            self._make_folder(path.parent)
            tmp = _temporary(path)
            self._staged.append((path, tmp))
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)  # 0o666 & ~umask, as any new file
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except OSError as err:
            self.discard()
            raise ImageIOError(describe_os_error(err, path)) from err
        except BaseException:
            self.discard()
            raise

    def commit(self) -> list[Path]:
        """Move every file into place; returns their paths."""
        try:
            for path, tmp in self._staged:
                check_writable(path, self.overwrite)
                existed = path.exists()
                os.replace(tmp, path)
                if not existed:
                    self._done.append(path)
        except BaseException:
            self.discard()
            raise
        written = [p for p, _ in self._staged]
        self._staged, self._done, self._folders = [], [], []
        return written

    def discard(self) -> None:
        """Remove the temporaries, the files moved so far and the folders created."""
        for path in [tmp for _, tmp in self._staged] + self._done:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        for folder in reversed(self._folders):
            try:
                folder.rmdir()
            except OSError:
                pass
        self._staged, self._done, self._folders = [], [], []

    def _make_folder(self, folder: Path) -> None:
        missing = [f for f in (folder, *folder.parents) if not f.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        self._folders.extend(reversed(missing))

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def _atomic_write(path: Path, data: bytes, overwrite: bool) -> None:
    """Write ``data`` to a temporary file beside ``path``, then move it into place."""
    with OutputSet(overwrite) as out:
        out.add(path, data)


__all__ = [
    "TMP_MARK",
    "ImageIOError",
    "ImageMeta",
    "OutputExistsError",
    "OutputSet",
    "check_image_format",
    "check_output",
    "check_writable",
    "describe_os_error",
    "encode_image",
    "read_image",
    "read_mask",
    "remove_stale_temporaries",
    "sidecar_bytes",
    "write_image",
    "write_sidecar",
]
