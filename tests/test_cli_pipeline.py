"""The click-free pipeline behind the restoration commands (:mod:`pnp_restore.cli.pipeline`
and :mod:`pnp_restore.cli.plan`), called directly with the fake prior and solver of
``cli_fakes``: outputs and their safety, sidecars, batches and seeds, memory, all-or-none
writes. The click layer is tested in test_cli_commands.py."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from cli_fakes import Fake, files, image, mask
from pnp_restore import io, operators
from pnp_restore.cli import pipeline, plan
from pnp_restore.cli.inpaint import observed_pixels
from pnp_restore.cli.settings import DENOISER, Common
from pnp_restore.errors import ConfigError, PnPRestoreError
from pnp_restore.io import read_mask
from pnp_restore._rng import SampleRNG
from pnp_restore.operators.grayscale import Grayscale, rgb_observation
from pnp_restore.tasks import Task


@pytest.fixture
def fake():
    return Fake()


def run_sr(paths, fake, *, scale=2, sigma_y=0.01, **settings):
    """``pnp-restore sr PATHS --scale SCALE -q`` through the pipeline."""
    common = Common(solver=settings.pop("solver", "ddrm"), quiet=settings.pop("quiet", True), **settings)
    return pipeline.run(list(map(Path, paths)), common, command="sr", sigma_y=sigma_y,
                        operator_for=lambda h, w: operators.get("sr", scale=scale), record={"scale": scale},
                        task=Task.SUPER_RESOLUTION, argv=["sr", *map(str, paths)], backend=fake.backend)


def run_inpaint(image_path, mask_path, fake, echo=print, sigma_y=0.01, **settings):
    """``pnp-restore inpaint IMAGE MASK`` through the pipeline."""
    common = Common(solver="ddrm", **{"quiet": True, **settings})

    def operator_for(h, w):
        return operators.get("inpainting", mask=read_mask(mask_path, (h, w)))

    return pipeline.run([Path(image_path)], common, command="inpaint", sigma_y=sigma_y, operator_for=operator_for,
                        record={"mask": str(mask_path)}, measure=True, observed=observed_pixels, task=Task.INPAINTING,
                        inputs=[Path(mask_path)], argv=["inpaint", str(image_path), str(mask_path)],
                        backend=fake.backend, echo=echo)


# --------------------------------------------------------------------------- outputs and sidecars


def test_inpaint_writes_result_and_sidecar(tmp_path, fake):
    arr = image(tmp_path / "photo.png")
    m = mask(tmp_path / "mask.png") > 0
    said = []
    out = run_inpaint(tmp_path / "photo.png", tmp_path / "mask.png", fake, echo=said.append, quiet=False)
    assert out == [tmp_path / "photo_restored.png"] and said == [f"wrote {out[0]}"]
    assert files(tmp_path) == ["mask.png", "photo.png", "photo_restored.json", "photo_restored.png"]
    res = cv2.imread(str(out[0]), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(res[~m], arr[~m]) and (res[m] == 0).all()  # A^+ y of the measurement
    (call,) = fake.calls
    assert call["opts"] == {"task": Task.INPAINTING} and call["seed"] == 0 and call["sigma_y"] == 0.01
    rec = json.loads((tmp_path / "photo_restored.json").read_text())
    assert rec["command"] == f"pnp-restore inpaint {tmp_path / 'photo.png'} {tmp_path / 'mask.png'}"
    assert list(rec)[:9] == ["command", "solver", "prior", "seed", "steps", "sigma_y", "version", "nfe", "time_s"]
    assert {k: rec[k] for k in ("task", "sample", "batch_size", "device", "dtype", "options")} == {
        "task": "inpaint", "sample": 0, "batch_size": 1, "device": "cpu", "dtype": "float32",
        "options": {"paper_default": 1.5}}


def test_sidecar_records_what_ran(tmp_path, fake):
    image(tmp_path / "p.png", 16, 16)
    run_sr([tmp_path / "p.png"], fake, seed=5, samples=2, opt=("eta=0.5",))
    for j in (0, 1):
        rec = json.loads((tmp_path / f"p_restored_{j}.json").read_text())
        assert rec["seed"] == 5 + j and rec["steps"] == fake.steps and rec["solver"] == "ddrm"
        assert rec["options"] == {"paper_default": 1.5, "eta": 0.5}  # from restore()'s info, task defaults included
        assert "opts" not in rec
    pipeline.run([tmp_path / "p.png"], Common(solver=DENOISER, quiet=True, output=str(tmp_path / "d.png")),
                 command="denoise", sigma_y=25 / 255, operator_for=lambda h, w: operators.get("denoising"),
                 record={"sigma_255": "25"}, backend=fake.backend)
    rec = json.loads((tmp_path / "d.json").read_text())
    assert rec["seed"] is None and rec["steps"] == 1 and rec["options"] == {} and rec["nfe"] == 1
    assert fake.prior.sigmas == [pytest.approx(25 / 255)]


def test_no_sidecar_and_save_steps_gif(tmp_path, fake):
    fake.steps = 100
    image(tmp_path / "p.png", 16, 16)
    run_sr([tmp_path / "p.png"], fake, save_steps=True, sidecar=False)
    assert files(tmp_path) == ["p.png", "p_restored.png", "p_restored_steps.gif"]
    with Image.open(tmp_path / "p_restored_steps.gif") as gif:
        # 100 steps, at most 40 frames: every 3rd step (33) and the last one
        assert gif.size == (32, 32) and gif.n_frames == 34


def test_sr_16bit_rgba(tmp_path, fake):
    arr = np.random.default_rng(0).integers(0, 65536, (8, 8, 4)).astype(np.uint16)
    arr[..., :3] = 26000 + arr[..., :3] // 8  # colours in [0.4, 0.53]: A^+ y stays inside [0, 1]
    cv2.imwrite(str(tmp_path / "s.png"), arr)
    run_sr([tmp_path / "s.png"], fake, scale=4, output=str(tmp_path / "s4.png"))
    out = cv2.imread(str(tmp_path / "s4.png"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == (32, 32, 4)
    alpha = np.clip(cv2.resize(arr[..., 3].astype(np.float32) / 65535, (32, 32), interpolation=cv2.INTER_CUBIC), 0, 1)
    assert np.abs(out[..., 3] / 65535 - alpha).max() < 1e-4
    (call,) = fake.calls
    assert call["y"].shape == (1, 3, 8, 8) and call["operator"].scale == 4  # alpha never reaches the solver
    # A^+ of bicubic downsampling: downsampling the result gives back the input colours.
    x = torch.from_numpy(out[..., :3].astype(np.float64) / 65535).permute(2, 0, 1)[None]
    y = torch.from_numpy(arr[..., :3].astype(np.float64) / 65535).permute(2, 0, 1)[None]
    assert (call["operator"](x) - y).abs().max() < 1e-3


def test_grayscale_with_rgb_prior_is_measured_as_one_gray_channel(tmp_path, fake):
    """A gray photo with an RGB prior: the solver gets the 1-channel measurement and Grayscale(A), i.e.
    A(mean_c x) with the noise on the one channel (not the image replicated to RGB), and the
    output is the channel mean of its RGB result (the fake solver returns the pinv: the gray
    solution replicated, so the output is the inner pinv)."""
    fake.noise = 0.05
    arr = image(tmp_path / "g.png", 16, 16, channels=1)
    run_sr([tmp_path / "g.png"], fake)
    call = fake.calls[0]
    x_file = torch.from_numpy(arr.astype(np.float32) / 255)[None, None]
    assert call["y"].shape == (1, 1, 16, 16) and torch.equal(call["y"], x_file)
    op = call["operator"]
    assert isinstance(op, Grayscale) and isinstance(op.inner, operators.SuperResolution) and op.x_shape((1, 1, 16, 16)) == (1, 3, 32, 32)
    out = cv2.imread(str(tmp_path / "g_restored.png"), cv2.IMREAD_UNCHANGED)
    x = op.pinv(call["y"]) + 0.05 * SampleRNG(0, 1).randn((1, 3, 32, 32))
    expected = np.round(x.mean(1)[0].clamp(0, 1).numpy() * 255).astype(np.uint8)
    assert out.shape == (32, 32) and np.abs(out.astype(int) - expected).max() <= 1
    rec = json.loads((tmp_path / "g_restored.json").read_text())
    assert rec["gray"] == "measured as the channel mean of the prior's RGB image" and "observed_copied" not in rec


def test_grayscale_inpainting_keeps_the_observed_pixels(tmp_path, fake):
    fake.noise = 0.1
    arr = image(tmp_path / "g.png", channels=1)
    m = mask(tmp_path / "m.png") > 0
    run_inpaint(tmp_path / "g.png", tmp_path / "m.png", fake, sidecar=False, sigma_y=0.0)
    assert fake.calls[0]["y"].shape == (1, 1, 32, 32) and isinstance(fake.calls[0]["operator"], Grayscale)
    out = cv2.imread(str(tmp_path / "g_restored.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == (32, 32) and np.array_equal(out[~m], arr[~m]) and not np.array_equal(out[m], arr[m])


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("suffix, bits", [(".png", np.uint8), (".png", np.uint16), (".tif", np.uint16)])
def test_inpaint_with_sigma_y_0_copies_the_observed_pixels(tmp_path, fake, channels, suffix, bits):
    """sigma_y = 0: whatever the solver returns there (here pinv + noise), the unmasked pixels of the written
    file are the input's, bit for bit; sigma_y > 0: the solver's values (it may denoise them)."""
    fake.noise = 0.1
    arr = image(tmp_path / f"p{suffix}", channels=channels, dtype=bits)
    m = mask(tmp_path / "m.png") > 0
    out_path = tmp_path / f"out{suffix}"
    run_inpaint(tmp_path / f"p{suffix}", tmp_path / "m.png", fake, sigma_y=0.0, output=str(out_path))
    out = cv2.imread(str(out_path), cv2.IMREAD_UNCHANGED)
    assert out.dtype == bits and np.array_equal(out[~m], arr[~m]) and not np.array_equal(out[m], arr[m])
    assert json.loads((tmp_path / "out.json").read_text())["observed_copied"] is True
    run_inpaint(tmp_path / f"p{suffix}", tmp_path / "m.png", fake, sigma_y=0.02, output=str(out_path), overwrite=True)
    out = cv2.imread(str(out_path), cv2.IMREAD_UNCHANGED)
    assert not np.array_equal(out[~m], arr[~m])
    assert json.loads((tmp_path / "out.json").read_text())["observed_copied"] is False


def test_denoiser_on_a_gray_image_sees_iid_rgb_noise(tmp_path, fake):
    """denoise --solver denoiser on a gray image: the one denoiser call gets an RGB observation with i.i.d.
    noise of std sqrt(3) sigma whose channel mean is the image (rgb_observation), seeded; output gray."""
    arr = image(tmp_path / "g.png", 16, 16, channels=1)
    common = Common(solver=DENOISER, quiet=True, seed=4)
    pipeline.run([tmp_path / "g.png"], common, command="denoise", sigma_y=0.1,
                 operator_for=lambda h, w: operators.get("denoising"), record={}, backend=fake.backend)
    (z,) = fake.prior.inputs
    y = torch.from_numpy(arr.astype(np.float32) / 255)[None, None]
    assert fake.prior.sigmas == [pytest.approx(0.1 * 3**0.5)] and z.shape == (1, 3, 16, 16)
    assert torch.allclose(z.mean(1, keepdim=True), y, atol=1e-6) and torch.equal(z, rgb_observation(y, 0.1, seed=4)[0])
    rec = json.loads((tmp_path / "g_restored.json").read_text())
    assert rec["seed"] == 4 and rec["nfe"] == 1 and rec["gray"]
    out = cv2.imread(str(tmp_path / "g_restored.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == (16, 16)


def test_rgb_image_with_a_grayscale_prior_is_refused(tmp_path, fake):
    fake.prior.channels = 1
    image(tmp_path / "p.png", 16, 16)
    with pytest.raises(PnPRestoreError, match="p.png is RGB but the prior models grayscale images"):
        run_sr([tmp_path / "p.png"], fake)
    assert fake.calls == [] and files(tmp_path) == ["p.png"]


# --------------------------------------------------------------------------- batches, seeds, samples


def test_plan_batches_groups_equal_keys_in_order_of_first_appearance():
    outs = [[Path(f"{n}_{j}") for j in (0, 1)] for n in "abc"]
    items, batches = plan.plan_batches(["big", "small", "big"], outs, batch_size=3)
    assert [(it.image, it.sample) for it in items] == [(0, 0), (0, 1), (2, 0), (2, 1), (1, 0), (1, 1)]
    assert batches == [[0, 1, 2], [3], [4, 5]]
    assert items[2].path == Path("c_0")


def test_batches_by_size_and_seeds_do_not_depend_on_batch_size(tmp_path, fake):
    fake.noise = 0.1
    image(tmp_path / "a.png", seed=1)
    image(tmp_path / "b.png", 24, 24, seed=2)
    image(tmp_path / "c.png", seed=3)
    paths = [tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"]
    outs = run_sr(paths, fake, samples=2, output=str(tmp_path / "big"), batch_size=8)
    assert [p.name for p in outs] == ["a_0.png", "a_1.png", "c_0.png", "c_1.png", "b_0.png", "b_1.png"]
    # a and c (32x32) together, b (24x24) alone; outputs in order a, c, b -> seeds 0..3, 4..5
    assert [(c["y"].shape[0], c["y"].shape[-1], c["seed"]) for c in fake.calls] == [(4, 32, 0), (2, 24, 4)]
    assert files(tmp_path / "big") == sorted(f"{n}_{j}.{e}" for n in "abc" for j in (0, 1) for e in ("json", "png"))
    assert json.loads((tmp_path / "big" / "c_1.json").read_text())["seed"] == 3
    fake.calls.clear()
    run_sr(paths, fake, samples=2, output=str(tmp_path / "small"), batch_size=1)
    assert len(fake.calls) == 6
    for n in ("a_0", "a_1", "b_0", "c_1"):
        big = cv2.imread(str(tmp_path / "big" / f"{n}.png"))
        assert big.shape == ((48, 48, 3) if n[0] == "b" else (64, 64, 3))
        assert np.array_equal(big, cv2.imread(str(tmp_path / "small" / f"{n}.png")))
    assert not np.array_equal(cv2.imread(str(tmp_path / "big/a_0.png")), cv2.imread(str(tmp_path / "big/a_1.png")))


def test_images_with_different_sigma_y_are_not_batched_together(tmp_path, fake):
    image(tmp_path / "a.png", 16, 16, seed=1)
    image(tmp_path / "b.png", 16, 16, seed=2)
    levels = iter([0.02, 0.05])
    pipeline.run([tmp_path / "a.png", tmp_path / "b.png"], Common(solver="pnp_admm", quiet=True), command="denoise",
                 sigma_y=lambda x: next(levels), operator_for=lambda h, w: operators.get("denoising"), record={},
                 backend=fake.backend)
    assert [(c["y"].shape[0], c["sigma_y"], c["seed"]) for c in fake.calls] == [(1, 0.02, 0), (1, 0.05, 1)]


def test_seed_plus_outputs_may_not_overflow(tmp_path, fake):
    from pnp_restore.cli.settings import MAX_SEED

    image(tmp_path / "p.png", 16, 16)
    with pytest.raises(ConfigError, match="use a smaller --seed"):
        run_sr([tmp_path / "p.png"], fake, seed=MAX_SEED, samples=2)
    assert fake.prior_kwargs == {}


# --------------------------------------------------------------------------- outputs never replace inputs


def test_second_run_refuses_before_any_work(tmp_path, fake):
    image(tmp_path / "p.png")
    mask(tmp_path / "m.png")
    run_inpaint(tmp_path / "p.png", tmp_path / "m.png", fake)
    before = (tmp_path / "p_restored.png").read_bytes()
    fake.prior_kwargs = {}
    with pytest.raises(PnPRestoreError, match="p_restored.png exists; pass --overwrite to replace it"):
        run_inpaint(tmp_path / "p.png", tmp_path / "m.png", fake, seed=3)
    assert fake.prior_kwargs == {} and len(fake.calls) == 1  # no prior loaded, nothing solved
    assert (tmp_path / "p_restored.png").read_bytes() == before
    run_inpaint(tmp_path / "p.png", tmp_path / "m.png", fake, seed=3, overwrite=True)
    assert json.loads((tmp_path / "p_restored.json").read_text())["seed"] == 3


def test_colliding_outputs_are_refused(tmp_path, fake):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    image(tmp_path / "x" / "p.png")
    image(tmp_path / "y" / "p.png")
    with pytest.raises(ConfigError, match="would both be written to"):
        run_sr([tmp_path / "x" / "p.png", tmp_path / "y" / "p.png"], fake, output=str(tmp_path / "out"))
    assert fake.calls == []


@pytest.mark.parametrize("output", ["", ".", "p.png", "m.png", "link.png", "hard.png", "m"])
def test_output_never_replaces_an_input(tmp_path, fake, monkeypatch, output):
    monkeypatch.chdir(tmp_path)
    image(tmp_path / "p.png")
    mask(tmp_path / "m.png")
    os.symlink(tmp_path / "p.png", tmp_path / "link.png")
    os.link(tmp_path / "m.png", tmp_path / "hard.png")
    before = {n: (tmp_path / n).read_bytes() for n in ("p.png", "m.png")}
    with pytest.raises(PnPRestoreError) as err:  # "m": -o m gives m.png
        run_inpaint("p.png", "m.png", fake, output=output, overwrite=True)
    assert ("-o is empty" if output == "" else "would replace the input") in str(err.value)
    assert fake.prior_kwargs == {} and fake.calls == []
    assert {n: (tmp_path / n).read_bytes() for n in before} == before
    assert files(tmp_path) == ["hard.png", "link.png", "m.png", "p.png"]


def test_a_sidecar_may_replace_a_file_that_is_not_an_input(tmp_path, fake):
    image(tmp_path / "p.png")
    (tmp_path / "notes.json").write_text("{}")
    run_sr([tmp_path / "p.png"], fake, output=str(tmp_path / "notes.png"), overwrite=True)
    assert fake.calls and json.loads((tmp_path / "notes.json").read_text())["output"].endswith("notes.png")


def test_output_folder_with_trailing_slash_is_created(tmp_path, fake, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image(tmp_path / "p.png")
    run_sr(["p.png"], fake, output="newout/")
    assert (tmp_path / "newout").is_dir() and files(tmp_path / "newout") == ["p.json", "p.png"]
    assert not (tmp_path / "newout.png").exists()


@pytest.mark.parametrize("output, message", [
    ("afile.txt/out.png", "afile.txt is a file, so afile.txt/out.png cannot be created"),
    ("out.txt", "out.txt: '.txt' is not an image format OpenCV can write; use .png"),
    ("out.json", "out.json: '.json' is not an image format"),
    ("sub/", None),
])
def test_bad_output_paths_fail_before_any_work(tmp_path, fake, monkeypatch, output, message):
    monkeypatch.chdir(tmp_path)
    image(tmp_path / "p.png")
    (tmp_path / "afile.txt").write_text("x")
    if message is None:  # an output folder below a file
        (tmp_path / "sub").write_text("a file")
        message = "-o sub/ is a file, but a folder is needed"
    with pytest.raises(PnPRestoreError) as err:
        run_sr(["p.png"], fake, output=output)
    assert str(err.value).startswith(message)
    assert fake.prior_kwargs == {} and fake.calls == []


# --------------------------------------------------------------------------- memory


def test_memory_estimate_refuses_before_loading_the_prior(tmp_path, fake):
    fake.memory = 2**20
    image(tmp_path / "p.png", 64, 64)
    with pytest.raises(ConfigError, match=r"restoring 1 image\(s\) of 128x128 at once needs about .*downscale or crop the image"):
        run_sr([tmp_path / "p.png"], fake)
    assert fake.prior_kwargs == {} and files(tmp_path) == ["p.png"]


def test_memory_estimate_of_a_24_megapixel_photo():
    """A whole 6000x4000 DDRM run does not fit in 8 GiB even tiled (the solver's own state is ~5 GiB): one
    line; with 16 GiB it runs with the network in tiles; small images run whole; unknown memory: no plan."""
    common = Common(solver="ddrm", device="cpu", quiet=True)
    photo = {(1, 3, 4000, 6000): 1}
    with pytest.raises(ConfigError, match=r"6000x4000 at once needs about \d+\.\d GiB .* downscale or crop"):
        plan.check_memory(photo, common, 8 * 2**30)
    assert plan.check_memory(photo, common, 16 * 2**30) == {(1, 3, 4000, 6000): 1024}
    assert plan.check_memory({(1, 3, 256, 256): 4}, common, 8 * 2**30) == {(1, 3, 256, 256): None}
    assert plan.check_memory(photo, common, None) == {}
    with pytest.raises(ConfigError, match="use --batch-size 1"):
        plan.check_memory({(1, 3, 2000, 3000): 4}, common, 8 * 2**30)


def test_available_memory_is_positive_on_cpu():
    assert plan.available_memory(torch.device("cpu")) > 0


# --------------------------------------------------------------------------- all outputs or none


def test_failed_sidecar_write_leaves_no_image(tmp_path, fake, monkeypatch):
    image(tmp_path / "p.png", 16, 16)

    def full_disk(**record):
        raise OSError(errno.ENOSPC, "No space left on device", "p_restored.json")

    monkeypatch.setattr(io, "sidecar_bytes", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        run_sr([tmp_path / "p.png"], fake)
    assert files(tmp_path) == ["p.png"]  # no image, no temporaries


def test_failure_in_a_later_batch_writes_nothing(tmp_path, fake):
    image(tmp_path / "a.png", 16, 16)
    image(tmp_path / "b.png", 8, 8)

    def second_fails(y, *args, **kwargs):
        if fake.calls:
            raise ZeroDivisionError("boom")
        return fake.restore(y, *args, **kwargs)

    backend = dataclasses.replace(fake.backend, restore=second_fails)
    with pytest.raises(ZeroDivisionError):
        pipeline.run([tmp_path / "a.png", tmp_path / "b.png"], Common(solver="ddrm", quiet=True,
                     output=str(tmp_path / "out") + "/"), command="sr", sigma_y=0.01,
                     operator_for=lambda h, w: operators.get("sr", scale=2), record={}, backend=backend)
    assert len(fake.calls) == 1
    assert files(tmp_path) == ["a.png", "b.png"]  # the folder it created is gone too


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path, fake):
    image(tmp_path / "p.png", 16, 16)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    stale = tmp_path / f".p_restored.png{io.TMP_MARK}{dead}"
    live = tmp_path / f".other.png{io.TMP_MARK}{os.getppid()}"
    stale.write_bytes(b"half")
    live.write_bytes(b"in progress")
    run_sr([tmp_path / "p.png"], fake)
    assert not stale.exists() and live.exists()
    assert files(tmp_path) == [live.name, "p.png", "p_restored.json", "p_restored.png"]
