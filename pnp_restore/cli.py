"""The ``pnp-restore`` command line (click).

Commands: ``inpaint``, ``sr``, ``deblur``, ``denoise`` restore image files;
``priors`` lists the known priors; ``train-prior`` and ``bench`` are loaded
lazily from :mod:`pnp_restore.train` and :mod:`pnp_restore.benchmarks.cli`.
Everything heavy (torch, OpenCV, the solvers) is imported inside the commands so
that ``pnp-restore --help`` is fast and one missing piece does not break the
others. See ``docs/cli.md`` for the defaults and their reasons.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import math
import os
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

#: measurement noise assumed for real photos ([0, 1] scale, = 2.55/255): sensor
#: noise and compression mean no photo fits y = A(x) exactly, and sigma_y = 0
#: makes the solvers copy that noise into the result.
DEFAULT_SIGMA_Y = 0.01

#: per-task default solver (see docs/cli.md).
DEFAULT_SOLVER = {"inpaint": "ddrm", "sr": "ddrm", "deblur": "diffpir", "denoise": "denoiser"}

#: ``denoise --solver denoiser``: one call of the prior's MMSE denoiser (no sampling).
DENOISER = "denoiser"

#: at most this many frames are kept per output for --save-steps.
MAX_FRAMES = 40


# --------------------------------------------------------------------------- group


class _Group(click.Group):
    """Remembers the raw arguments (for the sidecar), registers lazy commands and is
    the one error boundary of every command (see :meth:`invoke`)."""

    #: name -> (module, attribute, short help shown without importing the module)
    lazy = {
        "train-prior": ("pnp_restore.train", "train_prior", "Train the built-in prior on a folder of images."),
        "bench": ("pnp_restore.benchmarks.cli", "bench", "Benchmark solvers and priors on standard test sets."),
    }

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["pnp_restore.argv"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; any error becomes ``Error: <one line>`` and exit status 1 (130 for Ctrl-C).

        Covers the lazy commands too, so they only raise project errors. With
        ``--debug`` (of the group or of a command) the exception propagates.
        """
        with _warnings_to_stderr():
            try:
                return super().invoke(ctx)
            except (click.ClickException, click.exceptions.Exit, click.Abort):
                raise
            except BaseException as err:
                if ctx.meta.get(_DEBUG_KEY) or not isinstance(err, (Exception, KeyboardInterrupt)):
                    raise
                exc = click.ClickException(_describe(err))
                if isinstance(err, KeyboardInterrupt):
                    exc.exit_code = 130
                raise exc from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *self.lazy]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.lazy:
            return super().get_command(ctx, name)
        module, attr, _ = self.lazy[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            return _unavailable(name, err)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = [
            (n, self.lazy[n][2] if n in self.lazy else self.commands[n].get_short_help_str(limit))
            for n in names
            if n in self.lazy or not self.commands[n].hidden
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


_DEBUG_KEY = "pnp_restore.debug"


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[_DEBUG_KEY] = True


#: ``--debug``, for the group and each command: keep the traceback (see :meth:`_Group.invoke`).
_debug_option = click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
                             help="Show the Python traceback on errors.")


def _unavailable(name: str, err: Exception) -> click.Command:
    def fail(args: tuple[str, ...]) -> None:
        raise click.ClickException(f"`pnp-restore {name}` is unavailable in this installation ({err}); reinstall pnp-restore")

    return click.Command(
        name,
        callback=fail,
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        help=f"(unavailable: {err})",
    )


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="pnp-restore", prog_name="pnp-restore")
@_debug_option
def main() -> None:
    """pnp-restore: training-free image restoration with diffusion priors.

    One pretrained denoiser restores any linear degradation: inpainting,
    super-resolution, deblurring, denoising. Run `pnp-restore COMMAND --help`
    for the options and an example of each command.
    """


# --------------------------------------------------------------------------- options


#: upper limits of the numeric options (a typo such as --steps 1e12 is refused at once).
MAX_STEPS = 100_000
MAX_SEED = 2**63 - 1
MAX_SAMPLES = 1000
MAX_BATCH = 1024
MAX_TILE = 16384
MAX_SCALE = 16


@dataclasses.dataclass
class Common:
    """The options every restoration command shares (see :func:`_common_options`)."""

    solver: str
    prior: str
    arch: str | None
    steps: int | None
    seed: int
    device: str
    dtype: str
    output: str | None
    overwrite: bool
    samples: int
    save_steps: bool
    tile: int | None
    batch_size: int
    sidecar: bool
    quiet: bool
    opt: tuple[str, ...]


def _common_options(task: str) -> Callable:
    """Add the shared options to a command (as one :class:`Common` argument)."""
    options = [
        click.option("--solver", default=DEFAULT_SOLVER[task], show_default=True,
                     help="Solver: ddrm, ddnm, dps, diffpir, pnp_admm, ..." + (" or 'denoiser' (one MMSE denoiser call)." if task == "denoise" else ".")),
        click.option("--prior", default="builtin", show_default=True,
                     help="Prior: a name from `pnp-restore priors`, a Hugging Face hub id, a folder or a checkpoint file."),
        click.option("--arch", default=None, help="Architecture of a checkpoint file or preset (see `pnp-restore priors`); not for the built-in prior."),
        click.option("--steps", type=click.IntRange(1, MAX_STEPS), default=None, help="Solver steps  [default: the solver's published value]."),
        click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help="Base seed; output k (in processing order) uses SEED + k."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True,
                     help="auto = cuda, else mps, else cpu."),
        click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default="float32", show_default=True,
                     help="Precision of the prior network (float16/bfloat16: GPU only); the solver runs in float32."),
        click.option("-o", "--output", default=None,
                     help="Output file, or folder (ends in /, exists, or several inputs)  [default: IMAGE_restored.png beside IMAGE]. Never an input."),
        click.option("--overwrite", is_flag=True, help="Replace existing output files (never the inputs)."),
        click.option("--samples", type=click.IntRange(1, MAX_SAMPLES), default=1, show_default=True,
                     help="Posterior samples per image, written as OUT_0.png, OUT_1.png, ..."),
        click.option("--save-steps", is_flag=True, help="Also save the intermediate x0 estimates (OUT_steps.gif)."),
        click.option("--tile", type=click.IntRange(0, MAX_TILE), default=None, help="Run the prior on overlapping tiles of this many pixels (large images, little memory; 0 = off)."),
        click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=4, show_default=True,
                     help="Images (x samples) restored together; equal sizes only."),
        click.option("--sidecar/--no-sidecar", default=True, show_default=True, help="Write OUT.json with the settings, seed, NFE and time."),
        click.option("--opt", multiple=True, metavar="KEY=VALUE", help="Extra solver hyper-parameter, e.g. --opt eta=0.85 (repeatable)."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar or messages."),
        _debug_option,
    ]

    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def command(**kwargs: Any) -> None:
            common = Common(**{fld.name: kwargs.pop(fld.name) for fld in dataclasses.fields(Common)})
            return f(common=common, **kwargs)

        for option in reversed(options):
            command = option(command)
        return command

    return decorate


_OOM_ADVICE = "out of memory; try --tile 256, a smaller --batch-size, or --dtype float16 on a GPU"


def _describe(err: BaseException) -> str:
    """One line for the user: the message of our errors, advice for out-of-memory and OS errors."""
    from .errors import PnPRestoreError

    text = " ".join(str(err).split()) or type(err).__name__
    low = text.lower()
    if isinstance(err, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError" or (
        isinstance(err, RuntimeError) and any(s in low for s in ("out of memory", "can't allocate memory", "defaultcpuallocator"))
    ):
        return _OOM_ADVICE
    if isinstance(err, PnPRestoreError):
        return text
    if isinstance(err, OSError):
        from .io import describe_os_error

        return describe_os_error(err)
    return f"{type(err).__name__}: {text} (run again with --debug for the traceback)"


class _warnings_to_stderr:
    """Print Python warnings as ``Warning: ...`` lines instead of source locations."""

    def __enter__(self) -> None:
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("default")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.showwarning = lambda message, *a, **k: click.echo(f"Warning: {message}", err=True)

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


#: solver arguments that have their own flag (or are set by the command), so not --opt.
_NOT_OPTS = {"seed": "--seed", "steps": "--steps", "solver": "--solver", "sigma_y": "--sigma-y", "task": None,
             "callback": None, "return_info": None, "x_init": None}


def _parse_opts(pairs: tuple[str, ...], task: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs to a dict (values parsed as JSON, else kept as strings)."""
    from .errors import ConfigError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--opt {pair!r} is not KEY=VALUE; write e.g. --opt eta=0.85")
        if key in _NOT_OPTS:
            flag = "--sigma" if key == "sigma_y" and task == "denoise" else _NOT_OPTS[key]
            raise ConfigError(f"--opt {pair}: {key} is not a solver option; "
                              + (f"use {flag} instead" if flag else "it cannot be set from the command line"))
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


# --------------------------------------------------------------------------- seams (monkeypatched in tests)


def _solver_names() -> list[str]:
    from .solvers import SOLVERS

    return sorted(SOLVERS)


def _load_prior(source: str, *, arch: str | None, device: Any, dtype: Any, tile: int | None) -> Any:
    from .priors import load

    kwargs = {"arch": arch} if arch else {}
    if tile:
        kwargs["tile"] = tile
    return load(source, device=device, dtype=dtype, **kwargs)


def _restore(y: Any, operator: Any, prior: Any, **kwargs: Any) -> tuple[Any, dict]:
    from .restore import restore

    return restore(y, operator, prior, return_info=True, **kwargs)


def _available_memory(device: Any) -> int | None:
    """Bytes that can still be allocated on ``device`` (None: unknown)."""
    if device.type == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


# --------------------------------------------------------------------------- checks before any work

#: rough peak memory per pixel of the restored image, measured with the built-in prior on
#: a CPU in float32 (256^2 and 512^2 pixels, DDRM): the network's activations take about
#: 2.5 kB per pixel it denoises at once (a whole image, or one --tile x --tile tile), the
#: solver's state about 0.25 kB per image pixel.
NET_BYTES_PER_PIXEL = 2600
SOLVER_BYTES_PER_PIXEL = 256


def _solver_options(common: Common, task: str) -> dict[str, Any]:
    """The checked ``--opt`` options; also refuses options that would be ignored."""
    from .errors import ConfigError

    opts = _parse_opts(common.opt, task)
    if common.solver == DENOISER:
        if task != "denoise":
            raise ConfigError(f"--solver {DENOISER} only exists for `denoise`; choose one of: {', '.join(_solver_names())}")
        if opts or common.steps is not None:
            raise ConfigError(f"--solver {DENOISER} is one denoiser call and takes no --steps or --opt; "
                              "drop them or choose a sampling --solver")
        return {}
    names = _solver_names()
    if common.solver not in names:
        raise ConfigError(f"unknown solver {common.solver!r}; choose one of: {', '.join(names)}")
    from . import solvers

    # validate_options checks names, types and ranges against the solver's signature.
    validate = getattr(solvers, "validate_options", None)
    return dict(validate(common.solver, opts)) if validate is not None else opts


def _check_arch(common: Common) -> None:
    """--arch only means something for checkpoint files and presets; refuse it elsewhere."""
    if common.arch is None:
        return
    from .errors import ConfigError
    from .priors.load import WEIGHT_SUFFIXES
    from .priors.registry import ENTRIES

    is_file = Path(common.prior).suffix.lower() in WEIGHT_SUFFIXES
    if common.prior == "builtin" or not (is_file or common.prior in ENTRIES):
        raise ConfigError(f"--arch only applies to a checkpoint file or a preset from `pnp-restore priors`; "
                          f"--prior {common.prior} brings its own architecture, so drop --arch")


def _output_paths(images: list[Path], output: str | None, samples: int) -> list[list[Path]]:
    """Output file(s) for each input: ``[[out_0, out_1, ...], ...]``."""
    from .errors import ConfigError

    if output is not None and not output.strip():
        raise ConfigError("-o is empty (an unset shell variable?); give an output file or folder")
    out = Path(output) if output is not None else None
    as_folder = out is not None and (len(images) > 1 or out.is_dir() or output.endswith(("/", os.sep)))
    if as_folder and out.exists() and not out.is_dir():
        raise ConfigError(f"-o {output} is a file, but a folder is needed (several inputs, or a trailing /); "
                          "pass -o FOLDER/")
    outs = []
    for img in images:
        if out is None:
            base = img.with_name(f"{img.stem}_restored.png")
        elif as_folder:
            base = out / f"{img.stem}.png"
        else:
            base = out if out.suffix else out.with_suffix(".png")
        outs.append([base] if samples == 1 else [base.with_name(f"{base.stem}_{j}{base.suffix}") for j in range(samples)])
    return outs


def _check_outputs(outs: list[list[Path]], common: Common, inputs: list[Path]) -> None:
    """Every output (image, sidecar, steps file) is new, writable, not an input, and unique."""
    from .errors import ConfigError
    from .io import check_image_format, check_output

    seen: dict[Path, Path] = {}
    for p in (p for ps in outs for p in ps):
        check_image_format(p)
        for q in (p, *_side_paths(p, common)):
            check_output(q, common.overwrite, inputs=tuple(inputs))
            key = q.resolve()
            if key in seen:
                raise ConfigError(f"two outputs would both be written to {key}; rename one input or give another -o")
            seen[key] = q


def _check_memory(batches: dict[tuple[int, ...], int], common: Common, device: Any) -> None:
    """Refuse, before allocating, a run whose largest batch does not fit in memory.

    Args:
        batches: the shape (B, C, H, W) of the restored images -> the largest batch of that shape.
    """
    from .errors import ConfigError

    available = _available_memory(device)
    if available is None:
        return
    half = 2 if common.dtype in ("float16", "bfloat16") else 1
    for (_, _, h, w), batch in batches.items():
        pixels = h * w
        at_once = min(pixels, common.tile**2) if common.tile else pixels
        need = batch * (pixels * SOLVER_BYTES_PER_PIXEL + at_once * NET_BYTES_PER_PIXEL // half)
        if need > available:
            tiled = common.tile and common.tile <= 256 and batch == 1
            advice = ("the image is too large for this machine even tiled; downscale it or use a machine with more memory"
                      if tiled else "use --tile 256 and --batch-size 1")
            raise ConfigError(
                f"restoring {batch} image(s) of {w}x{h} at once needs about {need / 2**30:.1f} GiB of memory "
                f"but {available / 2**30:.1f} GiB are available; {advice}"
            )


# --------------------------------------------------------------------------- the shared runner


@dataclasses.dataclass
class _Item:
    """One output: image ``image`` (index into the inputs), posterior sample ``sample``."""

    image: int
    sample: int
    path: Path


def _side_paths(out: Path, common: Common) -> list[Path]:
    paths = []
    if common.sidecar:
        paths.append(out.with_suffix(".json"))
    if common.save_steps:
        paths.append(out.with_name(f"{out.stem}_steps.gif"))
    return paths


def _run(
    ctx: click.Context,
    task: str,
    images: tuple[Path, ...],
    common: Common,
    sigma_y: float | Callable[[Any], float],
    operator_for: Callable[[int, int], Any],
    record: dict[str, Any],
    measure: bool = False,
    paper_task: str | None = None,
    inputs: tuple[Path, ...] = (),
) -> None:
    """Restore ``images`` with the operator ``operator_for(H, W)`` of each size.

    Everything that can be checked without the images (options, output paths) is
    checked first, then memory before the prior is loaded. The outputs are written
    together at the end: all of them, or none.

    Args:
        sigma_y: measurement noise ([0, 1] scale), or a function of the image
            tensor (1, C, H, W) giving it (``denoise --sigma auto``).
        measure: the measurement is ``operator(image)`` (inpainting: zero the
            missing pixels) instead of the image itself.
        record: task settings for the sidecar JSON.
        paper_task: task whose published solver settings apply (:func:`pnp_restore.solvers.task_defaults`).
        inputs: other input files (mask, kernel) that no output may replace.
    """
    import torch

    from .devices import resolve_device
    from .errors import ConfigError, ShapeError
    from .io import OutputSet, read_image, remove_stale_temporaries

    images = [Path(p) for p in images]
    opts = _solver_options(common, task)
    _check_arch(common)
    outs = _output_paths(images, common.output, common.samples)
    _check_outputs(outs, common, [*images, *inputs])
    if common.seed + len(images) * common.samples - 1 > MAX_SEED:
        raise ConfigError(f"--seed {common.seed} + one per output passes {MAX_SEED}; use a smaller --seed")
    device = resolve_device(common.device)
    for folder in {p.parent for ps in outs for p in ps if p.parent.is_dir()}:
        remove_stale_temporaries(folder)

    loaded = [read_image(p) for p in images]
    operators: dict[tuple[int, int], Any] = {}
    for x, _ in loaded:
        hw = tuple(x.shape[-2:])
        if hw not in operators:
            operators[hw] = operator_for(*hw)
    per_size: dict[tuple[int, int], int] = {}
    for x, _ in loaded:
        hw = tuple(x.shape[-2:])
        per_size[hw] = per_size.get(hw, 0) + common.samples
    _check_memory({tuple(operators[hw].x_shape((1, 3, *hw))): min(n, common.batch_size) for hw, n in per_size.items()},
                  common, device)
    sigmas = [float(sigma_y(x)) if callable(sigma_y) else float(sigma_y) for x, _ in loaded]

    dtype = getattr(torch, common.dtype)
    prior = _load_prior(common.prior, arch=common.arch, device=device, dtype=dtype, tile=common.tile)
    channels = getattr(prior, "channels", None)
    for (x, _), path in zip(loaded, images):
        if channels == 1 and x.shape[1] == 3:
            raise ShapeError(f"{path.name} is RGB but the prior models grayscale images; convert the image or use an RGB prior")

    # Items in processing order: groups of equal (size, sigma) in order of first appearance,
    # then input order, then sample. Output k uses seed + k whatever the batch size.
    def key(i: int) -> tuple:
        return (tuple(loaded[i][0].shape[-2:]), sigmas[i])

    groups = list(dict.fromkeys(key(i) for i in range(len(images))))
    order = sorted(range(len(images)), key=lambda i: groups.index(key(i)))
    items = [_Item(i, j, outs[i][j]) for i in order for j in range(common.samples)]
    batches: list[list[int]] = []
    for k, item in enumerate(items):
        if batches and len(batches[-1]) < common.batch_size and key(items[batches[-1][0]].image) == key(item.image):
            batches[-1].append(k)
        else:
            batches.append([k])

    from tqdm import tqdm

    bar = tqdm(total=len(batches) if common.solver == DENOISER else None, unit="step", disable=common.quiet,
               file=sys.stderr, dynamic_ncols=True, desc=task)
    argv = ctx.meta.get("pnp_restore.argv", sys.argv[1:])
    try:
        with OutputSet(common.overwrite) as staged:
            for batch in batches:
                first = items[batch[0]]
                x_in = torch.cat([loaded[items[k].image][0] for k in batch])
                if channels == 3 and x_in.shape[1] == 1:
                    x_in = x_in.expand(-1, 3, -1, -1)
                # The solver works in float32; --dtype sets the network's precision (the prior casts).
                x_in = x_in.to(device=device, dtype=torch.float32)
                operator = operators[tuple(x_in.shape[-2:])]
                y = operator(x_in) if measure else x_in
                frames: list[list] = [[] for _ in batch]
                x, info = _solve(y, operator, prior, common, sigmas[first.image], opts, seed=common.seed + batch[0],
                                 bar=bar, n_batches=len(batches), frames=frames, task=paper_task)
                x = x.detach().to("cpu", torch.float32)
                for b, k in enumerate(batch):
                    _stage_output(staged, items[k], x[b : b + 1], loaded[items[k].image][1], frames[b], common, {
                        "command": shlex.join(["pnp-restore", *argv]),
                        "solver": info["solver"], "prior": common.prior,
                        "seed": None if info["seed"] is None else info["seed"] + b,
                        "steps": info["steps"], "sigma_y": info["sigma_y"],
                        "nfe": info.get("nfe"), "time_s": info.get("time_s"),
                        "task": task, "input": str(images[items[k].image]), "sample": items[k].sample,
                        "batch_size": len(batch), "device": str(device), "dtype": common.dtype,
                        **record, "options": info.get("options") or {},
                    })
    finally:
        bar.close()
    if not common.quiet:
        for item in items:
            click.echo(f"wrote {item.path}")


def _solve(y, operator, prior, common: Common, sigma_y: float, opts: dict, *, seed: int, bar, n_batches: int,
           frames: list[list], task: str | None = None) -> tuple[Any, dict]:
    """One batch through the solver (or one denoiser call), updating the progress bar.

    Returns:
        ``(x, info)``: info is :func:`pnp_restore.restore`'s record of what ran
        (``solver, seed, steps, sigma_y, options, nfe, time_s``).
    """
    import torch

    if common.solver == DENOISER:
        start = time.perf_counter()
        with torch.no_grad():
            x = prior.denoise(y, sigma_y)
        bar.update(1)
        return x, {"solver": DENOISER, "seed": None, "steps": 1, "sigma_y": sigma_y, "nfe": 1,
                   "time_s": time.perf_counter() - start}

    seen = {"calls": 0, "steps": None}

    def callback(info: dict) -> None:
        steps = int(info.get("steps") or 0)
        if seen["steps"] is None:
            seen["steps"] = steps
            if bar.total is None and steps:
                bar.total = steps * n_batches
                bar.refresh()
        seen["calls"] += 1
        bar.update(1)
        if "nfe" in info:
            bar.set_postfix(nfe=int(info["nfe"]), refresh=False)
        every = max(1, math.ceil(steps / MAX_FRAMES)) if steps else 1
        if common.save_steps and info.get("x0") is not None and (seen["calls"] % every == 0 or seen["calls"] == steps):
            x0 = info["x0"].detach().to("cpu", torch.float32).clamp(0, 1)
            for b, f in enumerate(frames):
                f.append(x0[b : b + 1])

    kwargs = {"solver": common.solver, "sigma_y": sigma_y, "seed": seed, "callback": callback, "task": task, **opts}
    if common.steps is not None:
        kwargs["steps"] = common.steps
    return _restore(y, operator, prior, **kwargs)


def _stage_output(staged: Any, item: _Item, x, meta, frames: list, common: Common, record: dict) -> None:
    """Stage one result (gray again if the input was), its step frames and its sidecar in ``staged``."""
    from .io import encode_image, sidecar_bytes

    if meta.channels == 1 and x.shape[1] == 3:
        x = x.mean(dim=1, keepdim=True)  # the prior saw the gray image replicated to RGB
    staged.add(item.path, encode_image(item.path, x, meta))
    side = _side_paths(item.path, common)
    if common.save_steps:
        frames = [f.mean(dim=1, keepdim=True) if meta.channels == 1 and f.shape[1] == 3 else f for f in frames]
        staged.add(side[-1], _steps_bytes(side[-1], frames or [x]))
    if common.sidecar:
        staged.add(side[0], sidecar_bytes(output=str(item.path), **record))


def _steps_bytes(path: Path, frames: list) -> bytes:
    """An animated GIF (Pillow) of (1, C, H, W) frames."""
    import io as _io

    import numpy as np
    from PIL import Image

    arrays = [np.round(f[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8) for f in frames]
    pics = [Image.fromarray(a[..., 0] if a.shape[2] == 1 else a) for a in arrays]
    buf = _io.BytesIO()
    pics[0].save(buf, format="GIF", save_all=True, append_images=pics[1:], duration=120, loop=0)
    return buf.getvalue()


# --------------------------------------------------------------------------- commands

def _images(metavar: str = "IMAGE...") -> Callable:
    return click.argument("images", nargs=-1, required=True, metavar=metavar,
                          type=click.Path(exists=True, dir_okay=False, path_type=Path))



def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number.", ctx=ctx, param=param)
    return value


_SIGMA_Y = click.option("--sigma-y", type=click.FloatRange(0, 1), callback=_finite, default=DEFAULT_SIGMA_Y,
                        show_default=True, help="Measurement noise std on the [0, 1] scale (0 = exact data consistency).")


@main.command(context_settings={"help_option_names": ["-h", "--help"]})
@_images("IMAGE [MASK] | IMAGE... --mask MASK")
@click.option("--mask", "mask_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Mask for all IMAGES (white = fill). Without it, the last argument is the mask.")
@click.option("--mask-invert", is_flag=True, help="The mask is white where pixels are KEPT (observed).")
@click.option("--mask-threshold", type=click.FloatRange(0, 1, max_open=True), callback=_finite, default=0.0,
              show_default=True,
              help="Fill pixels whose mask value is above this (0..1; with --mask-invert: whose 1 - value is). "
                   "0: every pixel that is not pure black is filled, so anti-aliased mask edges count as missing.")
@click.option("--resize-mask", is_flag=True, help="Resize a mask of another size to each image.")
@_SIGMA_Y
@_common_options("inpaint")
@click.pass_context
def inpaint(ctx: click.Context, images: tuple[Path, ...], mask_path: Path | None, mask_invert: bool,
            mask_threshold: float, resize_mask: bool, sigma_y: float, common: Common) -> None:
    """Fill the white pixels of MASK in IMAGE.

    Every pixel of MASK that is not pure black is filled (--mask-threshold):
    the soft edges of a brush stroke are partly damaged too.

    \b
    Examples:
      pnp-restore inpaint photo.png mask.png
      pnp-restore inpaint *.png --mask mask.png -o filled/ --samples 3
    """
    if mask_path is None:
        if len(images) != 2:
            raise click.UsageError("give IMAGE MASK, or several images with --mask MASK")
        images, mask_path = images[:1], images[1]

    def operator_for(h: int, w: int) -> Any:
        from .io import read_mask
        from .operators import Inpainting

        return Inpainting(read_mask(mask_path, (h, w), invert=mask_invert, resize=resize_mask, threshold=mask_threshold))

    _run(ctx, "inpaint", images, common, sigma_y, operator_for, measure=True, inputs=(mask_path,),
         record={"mask": str(mask_path), "mask_invert": mask_invert, "mask_threshold": mask_threshold},
         paper_task="inpainting")


@main.command(context_settings={"help_option_names": ["-h", "--help"]})
@_images()
@click.option("--scale", type=click.IntRange(2, MAX_SCALE), default=4, show_default=True, help="Upscaling factor.")
@click.option("--kind", default="bicubic", show_default=True, help="Downsampling the low-resolution image went through.")
@_SIGMA_Y
@_common_options("sr")
@click.pass_context
def sr(ctx: click.Context, images: tuple[Path, ...], scale: int, kind: str, sigma_y: float, common: Common) -> None:
    """Super-resolve IMAGES by --scale (output is scale times larger).

    \b
    Examples:
      pnp-restore sr small.png --scale 4
      pnp-restore sr *.png --scale 2 -o big/
    """

    def operator_for(h: int, w: int) -> Any:
        from .operators import SuperResolution

        return SuperResolution(scale, kind=kind)

    _run(ctx, "sr", images, common, sigma_y, operator_for, record={"scale": scale, "kind": kind},
         paper_task="super_resolution")


@main.command(context_settings={"help_option_names": ["-h", "--help"]})
@_images()
@click.option("--kernel", default="gaussian:3.0", show_default=True,
              help="gaussian:STD (pixels), motion:INTENSITY (0..1, random kernel from --seed) or a kernel image file.")
@click.option("--kernel-size", type=click.IntRange(1, 1001), default=61, show_default=True,
              help="Size of gaussian/motion kernels (capped to the image, made odd).")
@click.option("--padding", type=click.Choice(["circular", "reflect"]), default="circular", show_default=True,
              help="Boundary model of the blur. circular: exact FFT solve (fast; DiffPIR's own choice). "
                   "reflect: closer to real borders, but the data step is iterative (slow with large kernels).")
@_SIGMA_Y
@_common_options("deblur")
@click.pass_context
def deblur(ctx: click.Context, images: tuple[Path, ...], kernel: str, kernel_size: int, padding: str,
           sigma_y: float, common: Common) -> None:
    """Remove a known blur from IMAGES.

    \b
    Examples:
      pnp-restore deblur blurry.png --kernel gaussian:3.0
      pnp-restore deblur blurry.png --kernel psf.png --solver dps --steps 1000
    """

    def operator_for(h: int, w: int) -> Any:
        from .operators import Blur

        return Blur(_kernel(kernel, kernel_size, h, w, common.seed), padding=padding)

    _run(ctx, "deblur", images, common, sigma_y, operator_for, inputs=(Path(kernel),) if Path(kernel).is_file() else (),
         record={"kernel": kernel, "kernel_size": kernel_size, "padding": padding},
         paper_task="motion_deblur" if kernel.startswith("motion:") else "gaussian_deblur")


def _kernel(spec: str, size: int, h: int, w: int, seed: int) -> Any:
    """A blur kernel (k, k) summing to 1 from ``gaussian:STD``, ``motion:INTENSITY`` or a file."""
    from .errors import ConfigError

    size = min(size, h, w)
    size -= 1 - size % 2  # odd, so the kernel has a centre
    name, sep, value = spec.partition(":")
    if sep and name in ("gaussian", "motion"):
        try:
            v = float(value)
        except ValueError:
            raise ConfigError(f"--kernel {spec}: {value!r} is not a number; write e.g. {name}:{'3.0' if name == 'gaussian' else '0.5'}") from None
        from .operators import gaussian_kernel, motion_kernel

        return gaussian_kernel(size, v) if name == "gaussian" else motion_kernel(size, v, seed)
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"--kernel {spec}: not gaussian:STD, motion:INTENSITY or an existing image file")
    from .io import read_image

    k = read_image(path)[0][0].mean(0).double()
    if float(k.sum()) <= 0:
        raise ConfigError(f"--kernel {spec}: the kernel image is all black; give a PSF with positive values")
    return k / k.sum()


@main.command(context_settings={"help_option_names": ["-h", "--help"]})
@_images()
@click.option("--sigma", default="auto", show_default=True,
              help="Noise std on the 0..255 scale, or 'auto' to estimate it per image (scikit-image).")
@_common_options("denoise")
@click.pass_context
def denoise(ctx: click.Context, images: tuple[Path, ...], sigma: str, common: Common) -> None:
    """Remove Gaussian noise of std --sigma (0..255 scale) from IMAGES.

    With the default --solver denoiser this is one call of the prior's MMSE
    denoiser; any other solver samples with the Denoising operator.

    \b
    Examples:
      pnp-restore denoise noisy.png --sigma 25
      pnp-restore denoise scans/*.tif -o clean/ --solver pnp_admm
    """
    from .errors import ConfigError

    if sigma == "auto":
        sigma_y: float | Callable = _estimate_sigma
    else:
        try:
            sigma_y = float(sigma) / 255.0
        except ValueError:
            raise ConfigError(f"--sigma {sigma!r} is not a number; give e.g. --sigma 25 (0..255 scale) or auto") from None
        if not 0 < sigma_y < 1:
            raise ConfigError(f"--sigma {sigma} is outside (0, 255); give the noise std on the 0..255 scale")

    def operator_for(h: int, w: int) -> Any:
        from .operators import Denoising

        return Denoising()

    _run(ctx, "denoise", images, common, sigma_y, operator_for, record={"sigma_255": sigma})


def _estimate_sigma(x: Any) -> float:
    """Gaussian noise std of a (1, C, H, W) image in [0, 1] (Donoho's wavelet MAD, via scikit-image)."""
    from skimage.restoration import estimate_sigma

    img = x[0].permute(1, 2, 0).double().numpy()
    return max(float(estimate_sigma(img, channel_axis=-1, average_sigmas=True)), 1e-3)


@main.command("priors", context_settings={"help_option_names": ["-h", "--help"]})
@_debug_option
def priors_cmd() -> None:
    """List the known priors, whether their weights are installed, and where to get them.

    \b
    Example:
      pnp-restore priors
      pnp-restore inpaint photo.png mask.png --prior NAME
    """
    from .priors import available

    rows = available()
    head = ("name", "resolution", "range", "parameterisation", "installed", "description")
    table = [head] + [
        (str(r.get("name")), _fmt_res(r.get("resolution")), str(r.get("data_range", r.get("range", ""))),
         str(r.get("parameterisation", "")), "yes" if r.get("installed") else "no", str(r.get("description", "")))
        for r in rows
    ]
    widths = [max(len(row[c]) for row in table) for c in range(len(head))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    missing = [r for r in rows if not r.get("installed")]
    if missing:
        click.echo("\nNot installed (nothing is downloaded automatically):")
        for r in missing:
            click.echo(f"  {r.get('name')}: {_how_to_get(r)}")
    click.echo("\nUse one with --prior NAME, e.g. pnp-restore inpaint photo.png mask.png --prior builtin")


def _how_to_get(row: dict) -> str:
    from .priors import registry

    entry = registry.ENTRIES.get(row.get("name"), {})
    if entry.get("hub_id"):
        return f"huggingface-cli download {entry['hub_id']}  (fills the local Hugging Face cache)"
    if entry.get("filename"):
        return f"download {row.get('url')} and save it as {registry.weights_dir() / entry['filename']}"
    return str(row.get("url") or "see docs/priors.md")


def _fmt_res(res: Any) -> str:
    if res is None:
        return "any"
    if isinstance(res, (tuple, list)):
        return "x".join(map(str, res))
    return f"{res}x{res}" if isinstance(res, int) else str(res)


if __name__ == "__main__":
    main(prog_name="pnp-restore")
