"""Time and peak memory of ``pnp-restore inpaint`` with its defaults on photos of several sizes.

Each case runs the real CLI in a subprocess under ``/usr/bin/time -v`` (wall, user and system
CPU time, peak RSS, minor page faults) and is appended to a JSON file as soon as it ends, so an
interrupted run resumes where it stopped (cases already in the file are skipped).

    python benchmarks/photo_sizes.py make IMAGES_DIR            # test photos + masks from BSDS500 train
    python benchmarks/photo_sizes.py run IMAGES_DIR results.json [--sizes 256,512,1024,6000x4000]
                                     [--env THP_MEM_ALLOC_ENABLE=1] [--label after]

Photos are mosaics of BSDS500 *train* images (never test), upscaled to the size; masks are one
box of 1/16 of the image (up to 1024^2) or five local square holes of 60..180 pixels (6000x4000).
When ``pnp_restore.cli.pipeline`` does not plan memory yet (the region/tile hook of
``pnp_restore.cli.plan.restore_planned``), ``--hook`` runs the CLI with it installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

SIZES = {"256": (256, 256), "512": (512, 512), "1024": (1024, 1024), "6000x4000": (6000, 4000)}
BSDS_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "train" / "BSDS500" / "train"
TIME_FIELDS = {
    "Elapsed (wall clock) time (h:mm:ss or m:ss)": "wall_s",
    "User time (seconds)": "user_s",
    "System time (seconds)": "sys_s",
    "Maximum resident set size (kbytes)": "peak_rss_kb",
    "Minor (reclaiming a frame) page faults": "minor_faults",
    "Exit status": "exit",
}


def make(folder: Path, source: Path = BSDS_TRAIN) -> None:
    """Write ``photo_WxH.png`` and ``mask_WxH.png`` for every size into ``folder``."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    for w, h in SIZES.values():
        out, k = Image.new("RGB", (w, h)), w % 7
        cell = max(256, min(w, h) // 2)
        for top in range(0, h, cell):
            for left in range(0, w, cell):
                im = Image.open(files[k % len(files)]).convert("RGB")
                k += 1
                s = cell / min(im.size)
                im = im.resize((max(cell, round(im.size[0] * s)), max(cell, round(im.size[1] * s))), Image.BICUBIC)
                out.paste(im.crop((0, 0, cell, cell)), (left, top))
        out.save(folder / f"photo_{w}x{h}.png")
        mask = np.zeros((h, w), np.uint8)
        if w <= 1024:
            mask[h // 4 : h // 2, w // 4 : w // 2] = 255
        else:
            rng = np.random.default_rng(0)
            for _ in range(5):
                cy, cx, r = rng.integers(300, h - 300), rng.integers(300, w - 300), rng.integers(30, 90)
                mask[cy - r : cy + r, cx - r : cx + r] = 255
        Image.fromarray(mask).save(folder / f"mask_{w}x{h}.png")


def _parse_time(text: str) -> dict:
    out: dict = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(": ")
        if key in TIME_FIELDS:
            name = TIME_FIELDS[key]
            if name == "wall_s":
                parts = [float(p) for p in value.split(":")]
                out[name] = sum(p * 60**i for i, p in enumerate(reversed(parts)))
            else:
                out[name] = float(value) if "." in value else int(value)
    return out


def run_case(images: Path, size: str, env: dict, hook: bool, workdir: Path) -> dict:
    w, h = SIZES[size]
    photo, mask = images / f"photo_{w}x{h}.png", images / f"mask_{w}x{h}.png"
    out = workdir / f"restored_{w}x{h}.png"
    args = ["inpaint", str(photo), str(mask), "-o", str(out), "--overwrite"]
    cli = [sys.executable, __file__, "_cli", *args] if hook else ["pnp-restore", *args]
    cmd = ["/usr/bin/time", "-v", *cli]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    record = {"size": size, "command": " ".join(["pnp-restore", *args[:3]]), "hook": hook, "env": env,
              "wall_measured_s": time.perf_counter() - start, **_parse_time(proc.stderr)}
    last = [ln for ln in re.split(r"[\r\n]", proc.stderr) if ln.strip() and not ln.startswith("\t")]
    record["stderr_tail"] = last[-3:]
    try:
        record["load_avg"] = os.getloadavg()
    except OSError:
        pass
    return record


def _hooked_cli(argv: list[str]) -> None:
    """The CLI with :func:`pnp_restore.cli.plan.restore_planned` as the pipeline's solver call."""
    from pnp_restore.cli import main, pipeline, plan

    main(argv, prog_name="pnp-restore", obj=pipeline.Backend(restore=plan.restore_planned))


def hardware() -> dict:
    import torch

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version()}


def main(argv: list[str]) -> None:
    if argv and argv[0] == "_cli":
        return _hooked_cli(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    mk = sub.add_parser("make")
    mk.add_argument("images", type=Path)
    rn = sub.add_parser("run")
    rn.add_argument("images", type=Path)
    rn.add_argument("results", type=Path)
    rn.add_argument("--sizes", default=",".join(SIZES))
    rn.add_argument("--env", action="append", default=[], help="NAME=VALUE for the CLI's environment")
    rn.add_argument("--label", default="default")
    rn.add_argument("--hook", action="store_true", help="install the memory-planning hook (until the pipeline has it)")
    a = ap.parse_args(argv)
    if a.mode == "make":
        return make(a.images)
    env = dict(e.split("=", 1) for e in a.env)
    data = json.loads(a.results.read_text()) if a.results.exists() else {"hardware": hardware(), "cases": []}
    done = {(c["label"], c["size"]) for c in data["cases"]}
    for size in a.sizes.split(","):
        if (a.label, size) in done:
            continue
        record = {"label": a.label, **run_case(a.images, size, env, a.hook, a.results.parent)}
        data["cases"].append(record)
        a.results.write_text(json.dumps(data, indent=1) + "\n")
        print(json.dumps({k: record.get(k) for k in ("label", "size", "wall_s", "user_s", "sys_s", "peak_rss_kb",
                                                     "minor_faults", "exit")}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
