"""Image, mask and sidecar I/O (pnp_restore.io): bit depths, channels, alpha, atomic writes."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import warnings

import cv2
import numpy as np
import pytest
import torch

from pnp_restore.errors import PnPRestoreError, ShapeError
from pnp_restore import io
from pnp_restore.io import (
    TMP_MARK,
    ImageIOError,
    ImageMeta,
    OutputExistsError,
    OutputSet,
    check_output,
    read_image,
    read_mask,
    remove_stale_temporaries,
    write_image,
    write_sidecar,
)


def _rng():
    return np.random.default_rng(0)


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if TMP_MARK in p.name]


def test_rgb8_roundtrip_exact_and_bgr_order(tmp_path):
    bgr = _rng().integers(0, 256, (12, 10, 3), dtype=np.uint8)
    bgr[0, 0] = (0, 0, 255)  # pure red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "in.png"), bgr)
    x, meta = read_image(tmp_path / "in.png")
    assert x.shape == (1, 3, 12, 10) and x.dtype == torch.float32
    assert meta.bit_depth == 8 and meta.channels == 3 and meta.alpha is None
    assert x[0, :, 0, 0].tolist() == [1.0, 0.0, 0.0]  # RGB
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    write_image(tmp_path / "out.png", x, meta)
    assert np.array_equal(cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED), bgr)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_in_16bit_out(tmp_path, ext):
    img = _rng().integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / f"in{ext}"), img)
    x, meta = read_image(tmp_path / f"in{ext}")
    assert meta.bit_depth == 16
    # 16-bit precision survives the float32 round trip (an 8-bit path would lose it).
    assert abs(float(x[0, 2, 3, 4]) - img[3, 4, 0] / 65535) < 1e-6
    write_image(tmp_path / f"out{ext}", x, meta)
    out = cv2.imread(str(tmp_path / f"out{ext}"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and np.array_equal(out, img)


def test_grayscale_roundtrip(tmp_path):
    img = _rng().integers(0, 256, (8, 8), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), img)
    x, meta = read_image(tmp_path / "g.png")
    assert x.shape == (1, 1, 8, 8) and meta.channels == 1
    write_image(tmp_path / "o.png", x, meta)
    out = cv2.imread(str(tmp_path / "o.png"), cv2.IMREAD_UNCHANGED)
    assert out.ndim == 2 and np.array_equal(out, img)


def test_rgba_alpha_passthrough_and_resize(tmp_path):
    img = _rng().integers(0, 256, (8, 8, 4), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    x, meta = read_image(tmp_path / "a.png")
    assert x.shape == (1, 3, 8, 8) and meta.alpha.shape == (8, 8)
    assert np.allclose(meta.alpha, img[..., 3] / 255.0)
    write_image(tmp_path / "same.png", x, meta)
    assert np.array_equal(cv2.imread(str(tmp_path / "same.png"), cv2.IMREAD_UNCHANGED), img)
    # A 2x larger result (super-resolution): alpha is resized bicubically to match.
    big = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    write_image(tmp_path / "big.png", big, meta)
    out = cv2.imread(str(tmp_path / "big.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == (16, 16, 4)
    expect = np.clip(cv2.resize(img[..., 3].astype(np.float32) / 255, (16, 16), interpolation=cv2.INTER_CUBIC), 0, 1)
    assert np.abs(out[..., 3] / 255.0 - expect).max() <= 1 / 255 + 1e-6


def test_jpeg_and_float_tiff(tmp_path):
    img = np.full((8, 8, 3), 128, np.uint8)
    cv2.imwrite(str(tmp_path / "p.jpg"), img)
    x, meta = read_image(tmp_path / "p.jpg")
    assert meta.bit_depth == 8 and abs(float(x.mean()) - 128 / 255) < 2 / 255
    f = np.full((4, 5), 0.25, np.float32)
    cv2.imwrite(str(tmp_path / "f.tif"), f)
    x, meta = read_image(tmp_path / "f.tif")
    assert meta.bit_depth == 32 and x.shape == (1, 1, 4, 5) and torch.allclose(x, torch.tensor(0.25))


def test_16bit_meta_to_jpeg_warns_and_writes_8bit(tmp_path):
    x = torch.full((1, 3, 8, 8), 0.5)
    with pytest.warns(UserWarning, match="8-bit"):
        write_image(tmp_path / "o.jpg", x, ImageMeta(bit_depth=16, channels=3))
    assert cv2.imread(str(tmp_path / "o.jpg"), cv2.IMREAD_UNCHANGED).dtype == np.uint8


def test_refuses_to_overwrite_and_is_atomic(tmp_path):
    x = torch.zeros(1, 3, 4, 4)
    out = tmp_path / "out.png"
    write_image(out, x)
    before = out.read_bytes()
    with pytest.raises(OutputExistsError, match=r"out\.png exists; pass --overwrite to replace it") as err:
        write_image(out, torch.ones(1, 3, 4, 4))
    assert isinstance(err.value, PnPRestoreError)
    assert out.read_bytes() == before
    write_image(out, torch.ones(1, 3, 4, 4), overwrite=True)
    assert out.read_bytes() != before
    # An encoder failure leaves neither the file nor a temporary behind.
    with pytest.raises(ImageIOError, match="'.xyz' is not an image format OpenCV can write"):
        write_image(tmp_path / "bad.xyz", x)
    assert not (tmp_path / "bad.xyz").exists() and _leftovers(tmp_path) == []
    mode = os.stat(out).st_mode & 0o777
    assert mode & 0o044 == 0o044 & ~_umask()  # readable like any other new file, not 0600


def _umask() -> int:
    u = os.umask(0)
    os.umask(u)
    return u


def test_bad_inputs_raise_one_line_errors(tmp_path):
    with pytest.raises(ImageIOError, match="no such file"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_text("not an image")
    with pytest.raises(ImageIOError, match="not an image"):
        read_image(tmp_path / "junk.png")
    with pytest.raises(ShapeError, match="one image"):
        write_image(tmp_path / "b.png", torch.zeros(2, 3, 4, 4))


def _mask_file(path, white_box=True, size=(8, 8), value=255):
    m = np.zeros(size, np.uint8)
    if white_box:
        m[2:5, 3:6] = value
    cv2.imwrite(str(path), m)
    return path


def test_read_mask_convention_invert_and_resize(tmp_path):
    path = _mask_file(tmp_path / "m.png")
    m = read_mask(path, torch.zeros(1, 3, 8, 8))
    assert m.shape == (1, 1, 8, 8) and m.dtype == torch.float32
    assert float(m[0, 0, 3, 4]) == 0.0 and float(m[0, 0, 0, 0]) == 1.0  # white = fill = missing (0)
    assert int((m == 0).sum()) == 9
    assert torch.equal(read_mask(path, (8, 8), invert=True), 1 - m)
    with pytest.raises(ShapeError, match="--resize-mask"):
        read_mask(path, (1, 3, 16, 12))
    big = read_mask(path, (1, 3, 16, 16), resize=True, threshold=0.5)
    assert big.shape == (1, 1, 16, 16) and int((big == 0).sum()) == 36
    assert int((read_mask(path, (16, 16), resize=True) == 0).sum()) == 64  # default: the bilinear rim is missing too


def test_read_mask_fills_every_non_zero_pixel_by_default(tmp_path):
    m = np.zeros((4, 4), np.uint8)
    m[0, :] = 200
    m[1, :] = 100  # an anti-aliased edge: partly painted over, so partly damaged
    m[2, :] = 1
    cv2.imwrite(str(tmp_path / "soft.png"), m)
    with pytest.warns(UserWarning, match="not binary"):
        out = read_mask(tmp_path / "soft.png", (4, 4))
    assert out[0, 0, :, 0].tolist() == [0.0, 0.0, 0.0, 1.0]  # only pure black is observed
    with pytest.warns(UserWarning, match="above 0.5"):
        half = read_mask(tmp_path / "soft.png", (4, 4), threshold=0.5)
    assert half[0, 0, :, 0].tolist() == [0.0, 1.0, 1.0, 1.0]
    with pytest.warns(UserWarning):
        inv = read_mask(tmp_path / "soft.png", (4, 4), invert=True)  # white = kept: only pure white is kept
    assert inv[0, 0, :, 0].tolist() == [0.0, 0.0, 0.0, 0.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_mask(_mask_file(tmp_path / "bin.png", size=(4, 4)), (4, 4))


def test_sidecar_content_and_refusal(tmp_path):
    path = tmp_path / "out.json"
    write_sidecar(path, command=["pnp-restore", "sr", "a b.png"], solver="ddrm", prior="builtin", seed=3,
                  steps=20, sigma_y=0.01, nfe=20, time_s=1.5, scale=4)
    rec = json.loads(path.read_text())
    assert rec["command"] == "pnp-restore sr 'a b.png'"
    assert rec["version"] == __import__("pnp_restore").__version__
    assert {k: rec[k] for k in ("solver", "prior", "seed", "steps", "sigma_y", "nfe", "time_s", "scale")} == {
        "solver": "ddrm", "prior": "builtin", "seed": 3, "steps": 20, "sigma_y": 0.01, "nfe": 20, "time_s": 1.5,
        "scale": 4,
    }
    with pytest.raises(OutputExistsError):
        write_sidecar(path, solver="x", prior="y", seed=0, steps=1, sigma_y=0.0)


def test_output_set_writes_all_or_nothing(tmp_path, monkeypatch):
    with OutputSet() as out:
        out.add(tmp_path / "new" / "a.png", b"a")
        out.add(tmp_path / "new" / "a.json", b"j")
        assert sorted(os.listdir(tmp_path / "new")) == sorted(f".{n}{TMP_MARK}{os.getpid()}" for n in ("a.png", "a.json"))
    assert (tmp_path / "new" / "a.png").read_bytes() == b"a" and _leftovers(tmp_path / "new") == []
    # The second rename fails: the first file is removed again, and the folder the set created.
    real, calls = os.replace, []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error", str(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError), OutputSet() as out:
        out.add(tmp_path / "b" / "c" / "b.png", b"b")
        out.add(tmp_path / "b" / "c" / "b.json", b"j")
    assert not (tmp_path / "b").exists()
    # An error in the with block: nothing is moved into place.
    with pytest.raises(ZeroDivisionError), OutputSet() as out:
        out.add(tmp_path / "c.png", b"c")
        1 / 0
    assert sorted(os.listdir(tmp_path)) == ["new"]


def test_output_set_write_error_is_one_line(tmp_path, monkeypatch):
    out = OutputSet()
    out.add(tmp_path / "a.png", b"a")
    monkeypatch.setattr(io.os, "fdopen", lambda fd, mode: _Full(fd))
    with pytest.raises(ImageIOError, match=r"b\.json: No space left on device; free some disk space"):
        out.add(tmp_path / "b.json", b"j")
    assert os.listdir(tmp_path) == []  # a.png's temporary went too


class _Full:
    def __init__(self, fd):
        os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_stale_temporaries_are_removed_only_for_dead_processes(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    names = [f".a.png{TMP_MARK}{dead}", f".b.png{TMP_MARK}{os.getppid()}", f".c.png{TMP_MARK}{os.getpid()}",
             ".d.png.tmp", "e.png"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == [tmp_path / names[0]]
    assert sorted(os.listdir(tmp_path)) == sorted(names[1:])


def test_check_output_never_allows_an_input(tmp_path):
    (tmp_path / "in.png").write_bytes(b"x")
    os.symlink(tmp_path / "in.png", tmp_path / "link.png")
    os.link(tmp_path / "in.png", tmp_path / "hard.png")
    inputs = (tmp_path / "in.png",)
    for out in ("in.png", "link.png", "hard.png", "./sub/../in.png"):
        with pytest.raises(ImageIOError, match="would replace the input"):
            check_output(tmp_path / out, overwrite=True, inputs=inputs)
    check_output(tmp_path / "other.png", inputs=inputs)
    with pytest.raises(ImageIOError, match="in.png is a file, so"):
        check_output(tmp_path / "in.png" / "x" / "out.png", inputs=())
    with pytest.raises(ImageIOError, match="is a folder"):
        check_output(tmp_path, overwrite=True)


def test_encode_refuses_unknown_formats_before_writing(tmp_path):
    for name in ("out.txt", "out"):
        with pytest.raises(ImageIOError, match="OpenCV can write; use .png"):
            write_image(tmp_path / name, torch.zeros(1, 3, 4, 4))
    assert os.listdir(tmp_path) == []
