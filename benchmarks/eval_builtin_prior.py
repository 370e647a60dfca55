"""Evaluate the built-in prior: Gaussian denoising vs BM3D, unconditional samples, DDRM restorations.

Writes ``OUT/results.json`` (per-image rows and means) and the model card's figures
(``FIGURES/builtin_*.png``). Everything is seeded; rerunning reproduces the numbers.

Protocols (images verified against ``DATA/MANIFEST.tsv``):

* ``full``: the prior as a plain Gaussian denoiser (one call of ``denoise`` at the
  true sigma) on every image of CBSD68 (68) and Kodak24-crop (24), full size, at
  sigma = 15, 25, 50 (/255). Noise of image i of a set at level s is drawn from a
  generator seeded ``seed + 1000 * s + i``; noisy inputs are not clipped, outputs are
  clipped to [0, 1]; PSNR over all pixels and channels (skimage, data range 1).
* ``subset``: the same, side by side with colour BM3D (``bm3d.bm3d_rgb`` at the true
  sigma, package ``bm3d``, default profile), on every 4th image (17 + 6 images) and
  128 x 128 centre crops: BM3D needs ~15 s per such crop on a shared core, full images
  would take hours on the 2-core CPU this was run on. BM3D rows are cached in
  ``OUT/bm3d_cache.json`` (delete it to recompute).
* samples: 4 unconditional 64 x 64 samples, DDIM (eta = 0, 50 steps) over the prior's
  Karras schedule, seed 0.
* restorations: DDRM (20 steps, eta 0.85, eta_b 1, seed 0, sigma_y = 0) on three 128 x 128
  CBSD68 centre crops (images 0, 4, 8), for bicubic SR x4 and 50% random-pixel inpainting (mask seed = image index).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/eval_builtin_prior.py --data ../shared/data \\
        --run runs/builtin --out runs/eval_builtin --figures docs/figures
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import cv2
import numpy as np
import torch

from pnp_restore.data import list_images, verify
from pnp_restore.benchmarks.metrics import psnr
from pnp_restore.data import read_rgb_uint8, to_tensor
from pnp_restore.priors.builtin import load_builtin

SIGMAS = (15, 25, 50)
SETS = ("CBSD68", "Kodak24")
SUBSET_EVERY, SUBSET_CROP = 4, 128
RESTORE_CROP = 128


def load_set(data: Path, name: str) -> list[tuple[str, torch.Tensor]]:
    """(file stem, (1, 3, H, W) float32 in [0, 1]) for every image of ``data/test/name``, checksum-verified."""
    files = list_images(data / "test" / name)
    verify(files, data / "MANIFEST.tsv")
    return [(f.stem, to_tensor(read_rgb_uint8(f))[None]) for f in files]


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    t, l = (h - size) // 2, (w - size) // 2
    return x[..., t : t + size, l : l + size]


def noisy(x: torch.Tensor, sigma255: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return x + sigma255 / 255 * torch.randn(x.shape, generator=g, dtype=torch.float64).to(x.dtype)


def prior_denoise(prior, y: torch.Tensor, sigma255: int) -> torch.Tensor:
    with torch.no_grad():
        return prior.denoise(y, sigma255 / 255).clamp(0, 1)


def bm3d_denoise(y: torch.Tensor, sigma255: int) -> torch.Tensor:
    import bm3d  # benchmark-only dependency (pip install bm3d)

    z = bm3d.bm3d_rgb(y[0].permute(1, 2, 0).double().numpy(), sigma255 / 255)
    return torch.from_numpy(np.clip(z, 0, 1)).permute(2, 0, 1)[None].float()


def seconds_per_call(prior, size: int = 256) -> float:
    """Median wall time of one float32 ``denoise`` call on a (1, 3, size, size) image."""
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.no_grad():
        for _ in range(4):
            t = time.perf_counter()
            prior.denoise(x, 0.1)
            times.append(time.perf_counter() - t)
    return round(float(np.median(times[1:])), 3)


def subset(sets: dict, seed: int):
    """(dataset, stem, sigma, clean crop, noisy crop) of the ``subset`` protocol."""
    for name, images in sets.items():
        for i, (stem, x) in enumerate(images[::SUBSET_EVERY]):
            for s in SIGMAS:
                y = noisy(x, s, seed + 1000 * s + i * SUBSET_EVERY)
                yield name, stem, s, center_crop(x, SUBSET_CROP), center_crop(y, SUBSET_CROP)


def bm3d_cache(sets: dict, seed: int, out: Path) -> dict:
    """BM3D PSNRs of the ``subset`` protocol, computed once and kept in ``out/bm3d_cache.json``."""
    path = out / "bm3d_cache.json"
    cache = json.loads(path.read_text()) if path.is_file() else {}
    for name, stem, s, xc, yc in subset(sets, seed):
        key = f"{name}/{stem}/{s}/{seed}"
        if key not in cache:
            t = time.time()
            cache[key] = {"psnr": psnr(bm3d_denoise(yc, s), xc)[0], "time_s": round(time.time() - t, 1)}
            path.write_text(json.dumps(cache, indent=1))
            print(f"bm3d {key}: {cache[key]['psnr']:.2f} dB, {cache[key]['time_s']} s", flush=True)
    return cache


def denoising_rows(prior, sets: dict, seed: int, out: Path) -> list[dict]:
    rows = []
    for name, images in sets.items():
        for i, (stem, x) in enumerate(images):
            for s in SIGMAS:
                y = noisy(x, s, seed + 1000 * s + i)
                base = {"protocol": "full", "dataset": name, "image": stem, "sigma": s}
                rows.append(dict(base, method="noisy", psnr=psnr(y.clamp(0, 1), x)[0]))
                rows.append(dict(base, method="builtin", psnr=psnr(prior_denoise(prior, y, s), x)[0]))
    cache = bm3d_cache(sets, seed, out)
    for name, stem, s, xc, yc in subset(sets, seed):
        base = {"protocol": "subset", "dataset": name, "image": stem, "sigma": s}
        rows.append(dict(base, method="builtin", psnr=psnr(prior_denoise(prior, yc, s), xc)[0]))
        rows.append(dict(base, method="bm3d", psnr=cache[f"{name}/{stem}/{s}/{seed}"]["psnr"]))
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault((r["protocol"], r["dataset"], r["sigma"], r["method"]), []).append(r["psnr"])
    return [{"protocol": p, "dataset": d, "sigma": s, "method": m, "images": len(v), "psnr": round(float(np.mean(v)), 2)}
            for (p, d, s, m), v in sorted(groups.items())]


def to_png(path: Path, img: torch.Tensor, scale: int = 1) -> None:
    """(3, H, W) in [0, 1] -> 8-bit PNG (nearest-neighbour upscaled by ``scale``)."""
    a = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)[:, :, ::-1]
    if scale > 1:
        a = cv2.resize(a, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(path), a)


def grid(rows: list[list[torch.Tensor]], pad: int = 2) -> torch.Tensor:
    """Rows of equally sized (3, H, W) tiles -> one (3, H', W') image with white gaps."""
    def cat(ts, dim):
        gap = torch.ones_like(ts[0].narrow(dim, 0, pad))
        return torch.cat([t for x in ts for t in (x, gap)][:-1], dim=dim)

    return cat([cat(r, 2) for r in rows], 1)


def samples_figure(prior, figures: Path) -> None:
    from pnp_restore.solvers import ddim

    x = ddim(prior, (4, 3, 64, 64), steps=50, seed=0)
    to_png(figures / "builtin_samples.png", grid([list(x[:2]), list(x[2:])]), scale=2)


def restoration_rows(prior, images: list, figures: Path) -> list[dict]:
    from pnp_restore.operators import Inpainting, SuperResolution, random_mask
    from pnp_restore.solvers import ddrm

    rows, tiles = [], []
    for i, (stem, x) in enumerate(images):
        x = center_crop(x, RESTORE_CROP)
        sr = SuperResolution(4)
        y_sr = sr.forward(x)
        x_sr = ddrm(y_sr, sr, prior, steps=20, seed=0)
        mask = random_mask(x.shape[-2:], missing=0.5, seed=i)
        inp = Inpainting(mask)
        y_in = inp.forward(x)
        x_in = ddrm(y_in, inp, prior, steps=20, seed=0)
        bicubic = torch.nn.functional.interpolate(y_sr, scale_factor=4, mode="bicubic").clamp(0, 1)
        rows.append({"image": stem, "task": "sr4", "psnr": psnr(x_sr.clamp(0, 1), x)[0], "bicubic_psnr": psnr(bicubic, x)[0]})
        rows.append({"image": stem, "task": "inpaint50", "psnr": psnr(x_in.clamp(0, 1), x)[0]})
        tiles.append([bicubic[0], x_sr[0], y_in[0], x_in[0], x[0]])
    to_png(figures / "builtin_restorations.png", grid(tiles))
    return rows


def loss_figure(run: Path, figures: Path, w: int = 640, h: int = 320) -> None:
    """Training loss (per-25-step means, log scale) drawn with OpenCV."""
    by_step = {}
    for line in (run / "log.jsonl").read_text().splitlines():
        r = json.loads(line)
        by_step[r["step"]] = r["loss"]
    steps = np.array(sorted(by_step))
    loss = np.log10([by_step[s] for s in steps])
    smooth = np.convolve(np.pad(loss, 4, mode="edge"), np.ones(9) / 9, mode="valid")
    img = np.full((h, w, 3), 255, np.uint8)
    m = 50
    lo, hi = np.floor(loss.min() * 10) / 10, np.ceil(loss.max() * 10) / 10
    px = lambda s: int(m + (s / steps.max()) * (w - 2 * m))
    py = lambda v: int(h - m - (v - lo) / (hi - lo) * (h - 2 * m))
    cv2.rectangle(img, (m, m), (w - m, h - m), (0, 0, 0), 1)
    for v in np.arange(lo, hi + 1e-9, 0.1):
        cv2.putText(img, f"{10**v:.2f}", (2, py(v) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    for s in np.linspace(0, steps.max(), 5):
        cv2.putText(img, f"{int(s)}", (px(s) - 10, h - m + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    cv2.polylines(img, [np.array([[px(s), py(v)] for s, v in zip(steps, loss)], np.int32)], False, (200, 200, 200), 1)
    cv2.polylines(img, [np.array([[px(s), py(v)] for s, v in zip(steps, smooth)], np.int32)], False, (180, 60, 0), 2)
    cv2.putText(img, "EDM training loss (log scale) vs step", (m, m - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    cv2.imwrite(str(figures / "builtin_loss.png"), img)


@click.command()
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("../shared/data"))
@click.option("--weights", type=click.Path(exists=True, path_type=Path), default=None, help="Default: the shipped weights.")
@click.option("--run", type=click.Path(path_type=Path), default=Path("runs/builtin"), help="Training run (for the loss curve).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/eval_builtin"))
@click.option("--figures", type=click.Path(path_type=Path), default=Path("docs/figures"))
@click.option("--parts", default="denoise,samples,restore,loss", show_default=True,
              help="Comma-separated: bm3d (fill the BM3D cache only), denoise, samples, restore, loss.")
@click.option("--seed", type=int, default=0, show_default=True)
def main(data, weights, run, out, figures, parts, seed):
    """Evaluate the built-in prior and write results.json + the model card's figures."""
    parts = set(parts.split(","))
    out.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    prior = load_builtin(weights)
    res_path = out / "results.json"
    results = json.loads(res_path.read_text()) if res_path.is_file() else {}
    results.update(weights_sha256=prior.info["sha256"], training=prior.info.get("training"),
                   torch_threads=torch.get_num_threads(), seconds_per_256px_call=seconds_per_call(prior))
    sets = {name: load_set(data, name) for name in SETS} if parts & {"bm3d", "denoise", "restore"} else {}
    if "bm3d" in parts:  # fill the BM3D cache only (it does not depend on the prior)
        bm3d_cache(sets, seed, out)
    if "denoise" in parts:
        t = time.time()
        rows = denoising_rows(prior, sets, seed, out)
        results.update(denoising=summarize(rows), denoising_rows=rows, denoising_time_s=round(time.time() - t))
    if "samples" in parts:
        samples_figure(prior, figures)
    if "restore" in parts:
        results["restoration"] = restoration_rows(prior, sets["CBSD68"][:12:4], figures)
    if "loss" in parts and (run / "log.jsonl").is_file():
        loss_figure(run, figures)
    res_path.write_text(json.dumps(results, indent=1) + "\n")
    for r in results.get("denoising", []):
        if r["method"] != "noisy" or r["protocol"] == "full":
            print(f"{r['protocol']:7s} {r['dataset']:8s} sigma {r['sigma']:2d} {r['method']:8s} {r['psnr']:6.2f} dB ({r['images']} images)")
    for r in results.get("restoration", []):
        print(r)


if __name__ == "__main__":
    main()
