"""Training loop of the built-in prior: data pipeline, loss decrease, exact resume, CLI."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pnp_restore.data import DatasetError
from pnp_restore.data import RandomPatches, load_folder
from pnp_restore.errors import CheckpointError, ConfigError, PnPRestoreError
from pnp_restore.priors.builtin import EDMDenoiser, UNetConfig, load_builtin
from pnp_restore.train import edm_loss, step_generator, train, train_prior

TINY = UNetConfig(channels=(8, 16, 16), blocks=1, emb_dim=16, groups=4)
KW = {"batch_size": 8, "crop": 16, "config": TINY, "precision": "fp32", "progress": False, "warmup": 5, "lr": 5e-3}


def smooth_images(n: int = 4, size: int = 40, seed: int = 0) -> list[np.ndarray]:
    """Learnable synthetic images: upsampled 5x5 random colour fields (uint8, H x W x 3)."""
    rng = np.random.default_rng(seed)
    return [
        (cv2.resize(rng.random((5, 5, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
         .clip(0, 1) * 255).astype(np.uint8)
        for _ in range(n)
    ]


def val_loss(net: EDMDenoiser, images) -> float:
    patches = RandomPatches(images, 16, seed=123)
    y = patches.batch(0, 32) * 2 - 1
    with torch.no_grad():
        return edm_loss(net, y, step_generator(7, 0)).item()


def test_patches_deterministic_and_augmented():
    imgs = smooth_images()
    a, b = RandomPatches(imgs, 16, seed=3), RandomPatches(imgs, 16, seed=3)
    x = a.batch(5, 4)
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    assert torch.equal(x, b.batch(5, 4))
    assert not torch.equal(x, RandomPatches(imgs, 16, seed=4).batch(5, 4))
    assert not torch.equal(a[0], a[1])
    with pytest.raises(ConfigError):
        RandomPatches(imgs, 64)


def test_verify_files_detects_changes(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    originals = smooth_images(2)
    for i, im in enumerate(originals):
        cv2.imwrite(str(folder / f"{i}.png"), im)
    lines = ["sha256\tpath"] + [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}\tset/{p.name}" for p in sorted(folder.iterdir())
    ]
    (tmp_path / "MANIFEST.tsv").write_text("\n".join(lines) + "\n")
    imgs = load_folder(folder, tmp_path / "MANIFEST.tsv")
    assert len(imgs) == 2 and imgs[0].shape == (40, 40, 3) and imgs[0].dtype == np.uint8
    assert np.array_equal(imgs[0], originals[0][:, :, ::-1])  # OpenCV writes BGR, we read RGB
    cv2.imwrite(str(folder / "0.png"), 255 - originals[0])
    with pytest.raises(DatasetError, match="SHA-256"):
        load_folder(folder, tmp_path / "MANIFEST.tsv")
    cv2.imwrite(str(folder / "0.png"), originals[0])
    assert np.array_equal(load_folder(folder, tmp_path / "MANIFEST.tsv")[0], imgs[0])
    cv2.imwrite(str(folder / "extra.png"), originals[0])
    with pytest.raises(DatasetError, match="not listed"):
        load_folder(folder, tmp_path / "MANIFEST.tsv")


def test_training_lowers_the_loss(tmp_path):
    imgs = smooth_images()
    torch.manual_seed(0)  # train() seeds the init with its own seed (0)
    before = val_loss(EDMDenoiser(TINY), imgs)
    res = train(imgs, tmp_path, steps=150, seed=0, **KW)
    after = val_loss(load_builtin(res["weights"]).net, imgs)
    assert res["step"] == 150 and len(res["losses"]) == 150
    # Measured: 0.987 -> 0.499 on these seeds (EMA weights); require a 40% drop.
    assert after < 0.6 * before, (before, after)
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(lines) >= 2


def test_resume_matches_uninterrupted_run(tmp_path):
    imgs = smooth_images()
    full = train(imgs, tmp_path / "a", steps=6, seed=1, **KW)
    first = train(imgs, tmp_path / "b", steps=6, seed=1, max_minutes=0.0, **KW)  # stops after one step
    assert first["step"] == 1
    rest = train(imgs, tmp_path / "b", steps=6, seed=1, resume=True, **KW)
    assert rest["step"] == 6
    assert first["losses"] + rest["losses"] == full["losses"]
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)  # plain data: loads without pickled code
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    for key in ("model", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)


def test_resume_without_checkpoint_fails(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        train(smooth_images(), tmp_path, steps=2, resume=True, **KW)


def test_cli_runs_and_exports(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, im in enumerate(smooth_images(2)):
        cv2.imwrite(str(folder / f"{i}.jpg"), im)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        train_prior,
        ["--data", str(folder), "--out", str(out), "--steps", "2", "--batch-size", "2", "--crop", "16",
         "--device", "cpu", "--precision", "fp32"],
    )
    assert result.exit_code == 0, result.output
    prior = load_builtin(out / "weights")
    assert prior.info["training"]["steps"] == 2
    x = torch.rand(1, 3, 20, 20)
    assert prior.denoise(x, 0.1).shape == x.shape


class _Planted:
    """Pickles to a call of ``open(marker, "w")``: unpickling it with code allowed creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _one_line(err: BaseException | str) -> str:
    text = str(err).strip()
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


def test_resume_refuses_a_planted_pickle(tmp_path):
    imgs = smooth_images()
    train(imgs, tmp_path, steps=1, **KW)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    # premise: unpickling with code allowed (the old weights_only=False) runs the planted call
    probe = tmp_path / "probe.pt"
    torch.save({**ck, "step": _Planted(tmp_path / "probe-marker")}, probe)
    torch.load(probe, weights_only=False)
    assert (tmp_path / "probe-marker").exists()
    marker = tmp_path / "pwned"
    torch.save({**ck, "step": _Planted(marker)}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="pickled Python objects") as err:
        train(imgs, tmp_path, steps=2, resume=True, **KW)
    _one_line(err.value)
    assert not marker.exists()
    (tmp_path / "checkpoint.pt").write_bytes(__import__("pickle").dumps(_Planted(marker)))  # a bare pickle too
    with pytest.raises(CheckpointError):
        train(imgs, tmp_path, steps=2, resume=True, **KW)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04truncated zip"])
def test_resume_from_a_corrupt_checkpoint_fails_cleanly(tmp_path, content):
    (tmp_path / "checkpoint.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint") as err:
        train(smooth_images(), tmp_path, steps=2, resume=True, **KW)
    _one_line(err.value)


def test_resume_from_a_foreign_checkpoint_fails_cleanly(tmp_path):
    torch.save({"model": {}}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="not a pnp-restore training checkpoint"):
        train(smooth_images(), tmp_path, steps=2, resume=True, **KW)
    train(smooth_images(), tmp_path / "ok", steps=1, **KW)
    ck = torch.load(tmp_path / "ok" / "checkpoint.pt", weights_only=True)
    ck["model"] = {k: v[..., :1] for k, v in ck["model"].items()}  # wrong shapes
    torch.save(ck, tmp_path / "ok" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="does not fit this run") as err:
        train(smooth_images(), tmp_path / "ok", steps=2, resume=True, **KW)
    _one_line(err.value)


@pytest.mark.parametrize(
    "kw, error, match",
    [
        ({"steps": 0}, ConfigError, "steps must be >= 1"),
        ({"lr": -1.0}, ConfigError, "learning rate"),
        ({"lr": float("nan")}, ConfigError, "learning rate"),
        ({"crop": 1000}, ConfigError, "lower --crop"),
        ({"batch_size": 0}, ConfigError, "batch size"),
        ({"device": "cuda:99"}, ConfigError, "cuda"),
        ({"device": "gpu0"}, ConfigError, "is not a device name"),
        ({"resume": True}, CheckpointError, "does not exist"),
    ],
)
def test_bad_arguments_fail_with_one_line(tmp_path, kw, error, match):
    out = tmp_path / "run"
    with pytest.raises(error, match=match) as err:
        train(smooth_images(), out, steps=kw.pop("steps", 2), **{**KW, **kw})
    _one_line(err.value)
    assert not out.exists()  # nothing written for a run that cannot start


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_fails_with_one_line(tmp_path):
    with pytest.raises(ConfigError, match="CUDA is not available") as err:
        train(smooth_images(), tmp_path, steps=1, **{**KW, "device": "cuda"})
    _one_line(err.value)


def test_bad_data_folders_fail_with_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no images") as err:
        train(empty, tmp_path / "a", steps=1, **KW)
    _one_line(err.value)
    bad = tmp_path / "bad"
    bad.mkdir()
    cv2.imwrite(str(bad / "ok.png"), smooth_images(1)[0])
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(PnPRestoreError, match="broken.png") as err:
        train(bad, tmp_path / "b", steps=1, **KW)
    _one_line(err.value)


@pytest.mark.parametrize(
    "args",
    [["--steps", "0"], ["--lr", "-1"], ["--crop", "4"], ["--batch-size", "0"], ["--max-minutes", "-1"]],
)
def test_cli_rejects_out_of_range_options(tmp_path, args):
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), smooth_images(1)[0])
    result = CliRunner().invoke(train_prior, ["--data", str(folder), "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2 and "Invalid value" in result.output and "Traceback" not in result.output


def test_cli_errors_are_project_errors(tmp_path):
    """The pnp-restore group prints project errors as one line; train-prior must raise nothing else."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), smooth_images(1)[0])
    for args in (["--crop", "1000"], ["--resume"], ["--device", "gpu0"]):
        result = CliRunner().invoke(train_prior, ["--data", str(folder), "--out", str(tmp_path / "o"), *args])
        assert result.exit_code != 0 and isinstance(result.exception, PnPRestoreError), (args, result.exception)
        _one_line(result.exception)


def test_pnp_restore_train_prior_prints_one_line(tmp_path):
    """Through the pnp-restore group (its error boundary): a planted checkpoint and bad input give one line."""
    from pnp_restore.cli import main

    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), smooth_images(1)[0])
    out, marker = tmp_path / "run", tmp_path / "pwned"
    out.mkdir()
    torch.save({"model": _Planted(marker)}, out / "checkpoint.pt")
    cases = {
        "pickled Python objects": ["--resume"],
        "lower --crop": ["--crop", "1000"],
        "is not a device name": ["--device", "gpu0"],
    }
    for match, args in cases.items():
        result = CliRunner().invoke(main, ["train-prior", "--data", str(folder), "--out", str(out), *args])
        assert result.exit_code == 1 and match in _one_line(result.output), (args, result.output)
    assert not marker.exists()
