"""Record, or compare against a record, what every solver returns on every built-in operator.

A refactoring that must not change results is checked with it: record before, compare after.

    python benchmarks/output_snapshot.py record before.pt
    python benchmarks/output_snapshot.py compare before.pt      # prints the largest |difference| per case

Fixed inputs (seeded), the built-in prior, float32 and float64, 6 steps per solver (and each
paper task's own settings for DPS/DiffPIR), on 32x32 images: a few minutes on one CPU core.
"""

from __future__ import annotations

import sys

import torch

from pnp_restore import priors, restore
from pnp_restore.errors import OperatorError
from pnp_restore.operators import (
    Blur, Colorization, Denoising, GaussianNoise, Inpainting, SuperResolution, box_mask, gaussian_kernel,
    motion_kernel, random_mask,
)  # fmt: skip
from pnp_restore.solvers import SOLVERS

SIZE = 32
SIGMA_Y = 0.02


def _operators() -> dict[str, tuple[object, str | None]]:
    """name -> (operator, the paper task whose settings apply)."""
    return {
        "inpaint_random": (Inpainting(random_mask((SIZE, SIZE), missing=0.7, seed=0)), "inpainting"),
        "inpaint_box": (Inpainting(box_mask((SIZE, SIZE), (12, 12), position="center")), "inpainting"),
        "sr_bicubic": (SuperResolution(4, "bicubic"), "super_resolution"),
        "sr_avgpool": (SuperResolution(2, "avgpool"), "super_resolution"),
        "blur_circular": (Blur(gaussian_kernel(9, 2.0), "circular"), "gaussian_deblur"),
        "blur_reflect": (Blur(gaussian_kernel(9, 2.0), "reflect"), "gaussian_deblur"),
        "motion": (Blur(motion_kernel(9, 0.5, seed=0), "circular"), "motion_deblur"),
        "denoising": (Denoising(), None),
        "colorization": (Colorization(), None),
    }


def outputs() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    prior = priors.load("builtin")
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # some spatial correlation
    out = {}
    for op_name, (op, task) in _operators().items():
        y = GaussianNoise(SIGMA_Y)(op.forward(x), seed=1)
        for solver in SOLVERS:
            for dtype in (torch.float32, torch.float64):
                for use_task in (False, True):
                    if use_task and (task is None or solver not in ("dps", "diffpir")):
                        continue
                    key = f"{op_name}/{solver}/{str(dtype)[6:]}" + ("/task" if use_task else "")
                    kw = {"task": task, "steps": 6} if use_task else {"steps": 6}
                    try:
                        with torch.no_grad() if solver in ("ddrm", "ddnm", "pnp_admm") else torch.enable_grad():
                            out[key] = restore(
                                y.to(dtype), op, prior.to(dtype), solver, sigma_y=SIGMA_Y, seed=3, **kw
                            ).detach().double()
                    except OperatorError:  # the solver needs an SVD this operator lacks
                        continue
                    print(key, file=sys.stderr)
    return out


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] not in ("record", "compare"):
        sys.exit(__doc__)
    mode, path = argv
    torch.set_num_threads(1)
    got = outputs()
    if mode == "record":
        torch.save(got, path)
        return
    ref = torch.load(path, weights_only=True)
    worst = 0.0
    for key in sorted(set(ref) | set(got)):
        if key not in ref or key not in got:
            print(f"{key}: only in {'the record' if key in ref else 'this run'}")
            worst = float("inf")
            continue
        diff = (ref[key] - got[key]).abs().max().item()
        worst = max(worst, diff)
        print(f"{key}: {diff:.3g}")
    print(f"largest difference: {worst:.3g} over {len(ref)} cases")


if __name__ == "__main__":
    main(sys.argv[1:])
