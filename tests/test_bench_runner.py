"""Benchmark runner and report: a miniature run, resume after interruption, seeding, sharding, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from kornia.filters import gaussian_blur2d

from pnp_restore.benchmarks import datasets, metrics, protocols, report, run
from pnp_restore.cli import main
from pnp_restore.benchmarks.report import load_rows
from pnp_restore.benchmarks.runner import VOLATILE, read_rows
from pnp_restore.errors import ConfigError
from pnp_restore.priors import Prior

TASKS = ["sr4_bicubic@0.05", "random_inpaint_70@0"]
SOLVERS = ["ddnm", "pinv"]  # a stochastic diffusion solver and a baseline


class BlurPrior(Prior):
    """Tiny stand-in prior: a fixed Gaussian blur is a valid (if poor) denoiser."""

    name = "blur"
    sigma_min, sigma_max = 0.01, 1.0

    def denoise(self, x, sigma):
        return gaussian_blur2d(x, (5, 5), (1.0, 1.0), border_type="reflect")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Two small synthetic RGB images (smooth + texture), 40x36 so the 32 px crop is real."""
    d = tmp_path_factory.mktemp("data") / "Tiny"
    d.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:36] / 36.0
    for i, name in enumerate(["a.png", "b.png"]):
        img = np.stack([np.sin(3 * xx + i), np.cos(2 * yy - i), xx * yy], -1) * 0.4 + 0.5
        img = np.clip(img + 0.01 * rng.standard_normal(img.shape), 0, 1)
        cv2.imwrite(str(d / name), (img[..., ::-1] * 255).round().astype(np.uint8))
    return d


def _run(folder, out, **kw):
    args = dict(tasks=TASKS, solvers=SOLVERS, priors=BlurPrior(), data=[folder], out=out, size=32, steps=3,
                seeds=[0], device="cpu", metrics=["psnr", "ssim"], progress=False)  # fmt: skip
    args.update(kw)
    return run(**args)


def _stable(rows):
    return sorted(json.dumps({k: v for k, v in r.items() if k not in VOLATILE}, sort_keys=True) for r in rows)


def test_miniature_run_and_report(folder, tmp_path):
    out = tmp_path / "r.jsonl"
    rows = _run(folder, out, save_images=tmp_path / "img")
    assert len(rows) == 2 * 2 * 2 and _stable(read_rows(out)) == _stable(rows)
    r = next(r for r in rows if r["solver"] == "pinv" and r["task"] == "sr4_bicubic@0.05" and r["image"] == "a")
    assert r["prior"] == "none" and r["nfe"] == 0 and r["protocol"]["scale"] == 4 and r["protocol"]["size"] == 32
    assert r["time_s"] > 0 and r["peak_mem_mb"] > 0 and r["error"] is None
    # the stored PSNR is the one of the pseudo-inverse of the protocol's measurement
    im = datasets.load(folder, 32)[0]
    op, y = protocols.get("sr4_bicubic@0.05", size=32).degrade(im.x, [im.key])
    assert r["psnr"] == pytest.approx(metrics.psnr(op.pinv(y), im.x)[0], abs=1e-9)
    d = next(r for r in rows if r["solver"] == "ddnm")
    assert d["prior"] == "blur" and d["nfe"] == 3 and d["solver_seed"] == d["index"]

    paths = report(out, tmp_path / "rep")
    md, page = paths["markdown"].read_text(), paths["html"].read_text()
    psnrs = [q["psnr"] for q in rows if q["solver"] == "pinv" and q["task"] == "sr4_bicubic@0.05"]
    cell = f"{np.mean(psnrs):.2f} ± {np.std(psnrs, ddof=1):.2f}"
    assert "### Tiny (32 px)" in md and cell in md and "ddnm + blur, 3 steps" in md
    assert cell in page and "<svg" in page and page.count("data:image/png;base64,") >= 2 * 2 * (2 + 2)


def test_resume_after_interrupt_gives_identical_rows(folder, tmp_path):
    reference = _run(folder, tmp_path / "full.jsonl")
    out = tmp_path / "resumed.jsonl"

    class Killed(Exception):
        pass

    def kill_after_3(row, seen=[]):  # noqa: B006 - counter across calls
        seen.append(row)
        if len(seen) == 3:
            raise Killed

    with pytest.raises(Killed):
        _run(folder, out, on_row=kill_after_3)
    assert len(read_rows(out)) == 3
    with open(out, "a") as f:  # a torn last line, as left by a kill during a write
        f.write('{"dataset": "Tiny", "ima')
    assert len(read_rows(out)) == 3
    rest = _run(folder, out)
    assert len(rest) == len(reference) - 3
    assert _stable(read_rows(out)) == _stable(reference)
    assert out.read_text().count("\n") == len(reference)  # the torn line was cut, not kept
    assert _run(folder, out) == []  # nothing left to do
    assert {r["solver"] for r in _run(folder, out, steps=2)} == {"ddnm"}  # other steps: new rows (not pinv)


def test_batch_size_and_sharding_do_not_change_rows(folder, tmp_path):
    single = _run(folder, tmp_path / "b1.jsonl", batch_size=1)
    batched = _run(folder, tmp_path / "b2.jsonl", batch_size=2)
    assert {r["batch_size"] for r in batched} == {2}
    for a, b in zip(sorted(single, key=_key), sorted(batched, key=_key)):
        assert a["solver_seed"] == b["solver_seed"]
        assert a["psnr"] == pytest.approx(b["psnr"], abs=1e-4) and a["ssim"] == pytest.approx(b["ssim"], abs=1e-5)
    shards = [_run(folder, tmp_path / "s.jsonl", rank=r, world_size=2) for r in (0, 1)]
    assert shards[0] and shards[1] and (tmp_path / "s.rank1.jsonl").is_file()
    assert _stable(shards[0] + shards[1]) == _stable(single)
    assert len(load_rows([tmp_path / "s.jsonl"])) == len(single)  # report merges the rank files


def test_single_task_baselines_give_no_rows_on_other_tasks(folder, tmp_path):
    rows = _run(folder, tmp_path / "b.jsonl", solvers=["wiener", "pinv"],
                tasks=["denoise@0.05", "gaussian_deblur@0.05"], size=64)  # fmt: skip
    pairs = {(r["solver"], r["task"]) for r in rows}
    assert pairs == {("wiener", "gaussian_deblur@0.05"), ("pinv", "denoise@0.05"), ("pinv", "gaussian_deblur@0.05")}
    assert not any(r.get("error") for r in rows)


def _key(r):
    return (r["image"], r["task"], r["solver"])


def test_cli_run_and_report(folder, tmp_path):
    out = tmp_path / "cli.jsonl"
    cli = CliRunner()
    res = cli.invoke(main, ["bench", "run", "--tasks", "denoise@0.05", "--solvers", "pinv,admm_tv", "--data", str(folder),
                             "--size", "32", "--out", str(out), "--metrics", "psnr", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = read_rows(out)
    assert {r["solver"] for r in rows} == {"pinv", "admm_tv"} and len(rows) == 4
    tv = [r["psnr"] for r in rows if r["solver"] == "admm_tv"]
    noisy = [r["psnr"] for r in rows if r["solver"] == "pinv"]  # pinv of denoising = the noisy image
    assert min(tv) > max(noisy) + 5  # TV denoising gains ~9 dB here at sigma_y = 0.05 at sigma_y = 0.05
    res = cli.invoke(main, ["bench", "report", str(out), "-o", str(tmp_path / "rep")])
    assert res.exit_code == 0 and (tmp_path / "rep" / "index.html").is_file()
    res = cli.invoke(main, ["bench", "run", "--tasks", "nope@0", "--data", str(folder), "--out", str(out)])
    assert res.exit_code != 0 and "unknown benchmark task" in res.output


def test_dataset_fit_gray_and_manifest(folder, tmp_path):
    gray = tmp_path / "G"
    gray.mkdir()
    cv2.imwrite(str(gray / "g.png"), np.full((20, 30), 128, np.uint8))
    im = datasets.load(gray, size=16)[0]
    assert im.x.shape == (1, 3, 16, 16) and torch.allclose(im.x, torch.full_like(im.x, 128 / 255))
    assert datasets.load(gray, size=40)[0].x.shape == (1, 3, 40, 40)  # smaller than size: upscaled, then cropped
    x = torch.arange(6 * 8, dtype=torch.float32).view(1, 1, 6, 8)
    assert torch.equal(datasets.fit(x, 4), x[..., 1:5, 2:6])
    import hashlib

    manifest = folder.parent / "MANIFEST.tsv"
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}\t{folder.name}/{p.name}" for p in sorted(folder.iterdir())]
    manifest.write_text("sha256\tpath\n" + "\n".join(lines) + "\n")
    assert len(datasets.load(folder, 32, manifest=manifest)) == 2
    manifest.write_text("sha256\tpath\n" + lines[0] + "\n" + "0" * 64 + f"\t{folder.name}/b.png\n")
    with pytest.raises(datasets.DatasetError, match="does not match its SHA-256"):
        datasets.load(folder, 32, manifest=manifest)
    manifest.unlink()


@pytest.mark.data
def test_shared_sets_verify_against_manifest(data_dir):
    for name in ("Set5", "Set14"):
        ims = datasets.load(data_dir / "test" / name, 64, limit=3, manifest=data_dir / "MANIFEST.tsv")
        assert len(ims) == 3 and all(i.x.shape == (1, 3, 64, 64) for i in ims)


def test_read_rows_torn_and_corrupt(tmp_path):
    from pnp_restore.errors import ConfigError

    f = tmp_path / "r.jsonl"
    f.write_text('{"a": 1}\n{"a": 2}\n{"a": 3')
    assert read_rows(f) == [{"a": 1}, {"a": 2}] and f.read_text().endswith("3")
    assert read_rows(f, repair=True) == [{"a": 1}, {"a": 2}] and f.read_text() == '{"a": 1}\n{"a": 2}\n'
    f.write_text('{"a": 1}\n{"a": \n')  # a torn line that got its newline: still the last line
    assert read_rows(f, repair=True) == [{"a": 1}] and f.read_text() == '{"a": 1}\n'
    f.write_text('{"a": 1}\n{"a": \n{"a": 3}\n')
    with pytest.raises(ConfigError, match="corrupt line"):
        read_rows(f)


@pytest.mark.gpu
def test_cuda_batched_rows_match_cpu(folder, tmp_path):
    cpu = _run(folder, tmp_path / "cpu.jsonl", batch_size=1)
    gpu = _run(folder, tmp_path / "gpu.jsonl", device="cuda", batch_size=2)
    assert {r["device"] for r in gpu} == {"cuda"} and all(r["peak_mem_mb"] > 0 for r in gpu)
    for a, b in zip(sorted(cpu, key=_key), sorted(gpu, key=_key)):
        assert a["psnr"] == pytest.approx(b["psnr"], abs=1e-2)


def test_solver_that_cannot_run_a_task_gives_error_rows(folder, tmp_path):
    reflect = protocols.get("gaussian_deblur@0", size=32, kernel_size=9, padding="reflect")  # no SVD
    rows = _run(folder, tmp_path / "e.jsonl", tasks=[reflect], solvers=["ddrm", "pinv"])
    bad = [r for r in rows if r["solver"] == "ddrm"]
    assert len(bad) == 2 and all("SVD" in r["error"] and r["psnr"] is None for r in bad)
    pinv_rows = [r for r in rows if r["solver"] == "pinv"]
    # The exact pseudo-inverse of a 9x9 std-3 blur amplifies float32 rounding (PSNR can be low):
    # the point here is only that the SVD-free baseline runs and is scored.
    assert pinv_rows and all(r["error"] is None and math.isfinite(r["psnr"]) for r in pinv_rows), pinv_rows
    assert bad[0]["protocol"]["padding"] == "reflect" and bad[0]["protocol"]["kernel_size"] == 9
    md = report(tmp_path / "e.jsonl", tmp_path / "rep")["markdown"].read_text()
    assert "| ddrm + blur, 3 steps (error: OperatorError" in md


def test_seeds_stochastic_solvers_only(folder, tmp_path):
    rows = _run(folder, tmp_path / "s.jsonl", tasks=["sr4_bicubic@0.05"], seeds=[0, 1])
    assert sorted((r["solver"], r["seed"]) for r in rows if r["image"] == "a") == [("ddnm", 0), ("ddnm", 1), ("pinv", 0)]
    d = {r["seed"]: r for r in rows if r["solver"] == "ddnm" and r["image"] == "b"}
    assert (d[0]["solver_seed"], d[1]["solver_seed"]) == (1, 100_001)  # seed * 100000 + index
    assert d[0]["psnr"] != d[1]["psnr"]  # another seed, another sample


def test_registry_solvers_get_the_papers_per_task_settings(folder, tmp_path):
    """A DPS row of an inpainting task records DPS's published inpainting zeta (0.5); options override it."""
    task = protocols.get("random_inpaint_70@0.05", size=32)
    rows = _run(folder, tmp_path / "t.jsonl", tasks=[task], solvers=["dps"], images=1)
    assert rows[0]["solver_options"] == {"zeta": 0.5} and rows[0]["options"] == {}
    rows = _run(folder, tmp_path / "u.jsonl", tasks=[task], solvers=["dps"], images=1,
                solver_options={"dps": {"zeta": 0.1}})
    assert rows[0]["solver_options"] == {"zeta": 0.1}


# -- bad input, concurrency and resume keys ------------------------------------------------------
def _one_line(text: str) -> str:
    text = text.strip()
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


def _image_folder(parent: Path, name: str, seed: int, files=("x.png",)) -> Path:
    d = parent / name
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for f in files:
        cv2.imwrite(str(d / f), (rng.random((36, 36, 3)) * 255).astype(np.uint8))
    return d


def _bench(*args):
    return CliRunner().invoke(main, ["bench", *(str(a) for a in args)])


def test_cli_bad_seeds_device_and_presets_are_one_line(folder, tmp_path):
    base = ["run", "--tasks", "denoise@0.05", "--solvers", "pinv", "--data", folder, "--size", "32", "--out",
            tmp_path / "r.jsonl", "-q"]  # fmt: skip
    res = _bench(*base, "--seeds", "a,b")
    assert res.exit_code == 2 and "Invalid value for '--seeds'" in res.output and "Traceback" not in res.output
    for device, match in (("gpu0", "is not a device name"), ("cuda:99", "cuda")):
        res = _bench(*base, "--device", device)
        assert res.exit_code == 1 and match in _one_line(res.output), res.output
    if not torch.cuda.is_available():
        res = _bench(*base, "--device", "cuda")
        assert res.exit_code == 1 and "CUDA is not available" in _one_line(res.output)
    presets = {
        "bad.json": ('{"size": 32,', "not valid JSON"),
        "list.json": ("[1, 2]", "JSON object"),
        "key.json": ('{"sizes": 32}', "unknown key 'sizes'"),
        "value.json": ('{"seeds": ["a"]}', "'seeds'"),
    }
    for name, (text, match) in presets.items():
        (tmp_path / name).write_text(text)
        res = _bench(*base, "--preset", tmp_path / name)
        assert res.exit_code == 1 and match in _one_line(res.output), (name, res.output)
    assert not (tmp_path / "r.jsonl").exists()


def test_cli_report_on_files_that_are_not_results(tmp_path):
    cases = {
        "notes.txt": b"hello\nworld\n",
        "image.png": cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes(),
        "log.jsonl": b'{"step": 25, "loss": 0.5}\n',
        "empty.jsonl": b"",
        "list.jsonl": b"[1, 2]\n",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        res = _bench("report", tmp_path / name, "-o", tmp_path / "rep")
        assert res.exit_code == 1 and "bench run" in _one_line(res.output), (name, res.output)
    res = _bench("report", tmp_path / "missing.jsonl", "-o", tmp_path / "rep")
    assert res.exit_code == 1 and "no results file" in _one_line(res.output)


def test_disk_full_mid_run_is_one_line_and_resumable(folder, tmp_path, monkeypatch):
    import errno

    from pnp_restore.benchmarks import runner

    out = tmp_path / "r.jsonl"
    real, calls = runner.append_row, []

    def full_disk(f, row):
        calls.append(row)
        if len(calls) == 2:
            f.write('{"dataset": "Ti')  # a partial line, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f, row)

    monkeypatch.setattr(runner, "append_row", full_disk)
    res = _bench("run", "--tasks", "denoise@0.05", "--solvers", "pinv", "--data", folder, "--size", "32",
                 "--out", out, "--metrics", "psnr", "-q")  # fmt: skip
    assert res.exit_code == 1 and "No space left on device" in _one_line(res.output), res.output
    assert len(read_rows(out)) == 1 and not out.with_name("r.jsonl.lock").exists()
    monkeypatch.setattr(runner, "append_row", real)
    assert len(_run(folder, out, tasks=["denoise@0.05"], solvers=["pinv"])) == 1  # the rest, after the torn line is cut
    assert len(read_rows(out)) == 2


def test_a_run_that_fails_before_its_first_row_leaves_no_file(folder, tmp_path):
    def broken(y, operator, prior, **kw):
        raise RuntimeError("boom")

    out = tmp_path / "r.jsonl"
    with pytest.raises(RuntimeError, match="boom"):
        _run(folder, out, solvers={"broken": broken})
    assert not out.exists() and not out.with_name("r.jsonl.lock").exists()


def test_second_writer_on_the_same_file_fails_naming_the_first(folder, tmp_path):
    import os

    from pnp_restore.benchmarks.runner import ResultsFile, ResultsFileError

    out = tmp_path / "r.jsonl"
    with ResultsFile(out):
        with pytest.raises(ResultsFileError, match=f"in use by another `bench run` \\(pid {os.getpid()}") as err:
            _run(folder, out)
        _one_line(str(err.value))
        with pytest.raises(ResultsFileError):
            ResultsFile(out).__enter__()
    assert len(_run(folder, out)) == 8  # released on exit


def test_second_writer_in_another_process_fails(folder, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "r.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pnp_restore.benchmarks.runner import ResultsFile\n"
         f"with ResultsFile({str(out)!r}):\n    print('locked', flush=True); sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        res = _bench("run", "--tasks", "denoise@0.05", "--solvers", "pinv", "--data", folder, "--size", "32",
                     "--out", out, "--metrics", "psnr", "-q")  # fmt: skip
        assert res.exit_code == 1 and f"pid {holder.pid}" in _one_line(res.output), res.output
    finally:
        holder.communicate("\n")
    assert not out.exists()
    assert len(_run(folder, out, tasks=["denoise@0.05"], solvers=["pinv"])) == 2


def test_resume_key_holds_every_protocol_field_and_the_dtype(folder, tmp_path):
    out = tmp_path / "r.jsonl"
    kw = dict(tasks=["denoise@0.05"], solvers=["pinv"])
    assert len(_run(folder, out, **kw)) == 2
    assert _run(folder, out, **kw) == []
    resized = _run(folder, out, crop="resize", **kw)
    assert len(resized) == 2 and {r["protocol"]["crop"] for r in resized} == {"resize"}
    reflect = protocols.get("gaussian_deblur@0", size=32, kernel_size=9, padding="reflect")
    circular = protocols.get("gaussian_deblur@0", size=32, kernel_size=9)
    assert reflect.id == circular.id and len(_run(folder, out, tasks=[circular], solvers=["pinv"])) == 2
    assert len(_run(folder, out, tasks=[reflect], solvers=["pinv"])) == 2  # same task id, another boundary
    assert len(_run(folder, out, dtype=torch.float64, **kw)) == 2
    assert len(load_rows([out])) == 10
    md = report(out, tmp_path / "rep")["markdown"].read_text()
    assert "### Tiny (32 px, resize)" in md and "pinv, float64" in md


def test_same_image_name_in_two_folders(tmp_path):
    a = _image_folder(tmp_path / "a", "imgs", seed=1)
    b = _image_folder(tmp_path / "b", "imgs", seed=2)
    out = tmp_path / "r.jsonl"
    kw = dict(tasks=["denoise@0.05"], solvers=["pinv"])
    with pytest.raises(ConfigError, match="same name 'imgs'"):
        _run(None, out, data=[a, b], **kw)
    assert len(_run(a, out, **kw)) == 1
    assert len(_run(b, out, **kw)) == 1  # another file named imgs/x: a new row, not "already done"
    assert len(_run(None, out, data=[a, a], **kw)) == 0  # the same folder twice counts once
    rows = read_rows(out)
    assert len({r["sha256"] for r in rows}) == 2 and {r["image"] for r in rows} == {"x"}
    with pytest.warns(UserWarning, match="stand for different files"):
        assert len(load_rows([out])) == 2
    twins = _image_folder(tmp_path, "twins", seed=3, files=("x.png", "x.jpg"))
    assert sorted(r["image"] for r in _run(twins, tmp_path / "t.jsonl", **kw)) == ["x.jpg", "x.png"]


def test_rows_without_sha256_still_count_as_done(folder, tmp_path):
    """Result files written before the key held the image's SHA-256 resume without re-running."""
    out = tmp_path / "r.jsonl"
    rows = _run(folder, out)
    out.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "sha256"}) + "\n" for r in rows))
    assert _run(folder, out) == []
    assert len(load_rows([out])) == len(rows)


def test_tuned_defaults_are_used_recorded_and_resumed(folder, tmp_path):
    """defaults="tuned": a prior's tuned entry sets the solver's options and schedule; rows record what was asked
    and what was used (the papers' values where the prior has no entry, None for baselines); a resumed run skips
    them, and the paper run of the same work is separate work."""
    prior = BlurPrior()
    prior.tuned = {"entries": {"inpainting": {"ddnm": {"steps": 3, "options": {"eta": 0.2},
                                                       "schedule": {"kind": "karras", "sigma_max": 0.9, "sigma_min": 0.02, "rho": 2.0}}}}}
    out = tmp_path / "t.jsonl"
    rows = _run(folder, out, priors=prior, defaults="tuned")
    ddnm = {r["task"]: r for r in rows if r["solver"] == "ddnm" and r["image"] == "a"}
    assert ddnm["random_inpaint_70@0"]["defaults_used"] == "tuned" and ddnm["random_inpaint_70@0"]["solver_options"] == {"eta": 0.2}
    assert ddnm["random_inpaint_70@0"]["schedule"]["rho"] == 2.0
    assert ddnm["sr4_bicubic@0.05"]["defaults"] == "tuned" and ddnm["sr4_bicubic@0.05"]["defaults_used"] == "paper"
    assert all(r["defaults"] is None for r in rows if r["solver"] == "pinv")
    assert _run(folder, out, priors=prior, defaults="tuned") == []
    paper = _run(folder, out, priors=prior, solvers=["ddnm"])
    assert len(paper) == 4 and all(r["defaults_used"] == "paper" for r in paper)
