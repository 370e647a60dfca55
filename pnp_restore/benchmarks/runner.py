"""Benchmark runs: (image, task, solver, prior, seed) rows streamed to JSON lines.

Each finished row is appended to the results file, flushed and fsynced, so a
killed run loses at most the batch in flight. The file is created with its
first row (a run that fails before any row leaves no file) and is held with an
exclusive lock (``<file>.lock``, :func:`fcntl.flock`) while the run lasts, so a
second run on the same file stops at once instead of duplicating rows.
Starting the same run again reads the file, skips the rows it holds (same
image file, solver, prior, seed, steps, every protocol field, dtype and solver
options: :func:`row_key`) and truncates a torn last line before appending. An
image is identified by its dataset (folder name), name and the SHA-256 of its
file, so two folders holding different ``x.png`` never share a row. Rows
written before the SHA-256 was recorded (no ``sha256`` field) still count as
done for an image of the same dataset and name. Rows hold everything needed to
interpret them: the protocol's fields, the solver and its options, metrics,
NFE, wall-clock per image and peak memory.

Seeding. The degradation of an image depends only on its key and the protocol
(see :mod:`.protocols`). The solver of the image at position ``index`` of its
folder runs with seed ``seed * 100000 + index``; a batch holds images of
consecutive indices, so by the per-sample seeding convention (``seed + i`` for
sample i) a row is the same whatever the batch size.

Sharding: with ``world_size > 1`` (default: the ``RANK``/``WORLD_SIZE`` variables
set by ``torchrun``) the work units (one batch of one dataset x task x solver x
prior x seed) are dealt round-robin; rank r writes ``<out stem>.rank<r>.jsonl``
and :func:`pnp_restore.benchmarks.report.report` merges the files.
"""

from __future__ import annotations

import errno
import json
import os
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import ConfigError, PnPRestoreError
from . import baselines as _baselines
from . import datasets as _datasets
from . import metrics as _metrics
from . import protocols as _protocols

Tensor = torch.Tensor
SolverFn = Callable[..., tuple[Tensor, dict]]

SEED_STRIDE = 100_000
#: row fields that legitimately differ between two runs of the same work.
VOLATILE = ("time_s", "peak_mem_mb", "batch_size", "device_name", "finished")
KEY_FIELDS = ("dataset", "image", "solver", "prior", "seed", "protocol")
ALL_METRICS = ("psnr", "ssim", "lpips_alex", "lpips_vgg")


class ResultsFileError(PnPRestoreError, OSError):
    """A results file cannot be locked or written (another run holds it, the disk is full...)."""


def work_key(dataset, image, sha256, solver, prior, seed, steps, protocol: dict, dtype: str, options,
             defaults: str = "paper") -> tuple:  # fmt: skip
    """Identity of a unit of work: what a resumed run compares against :func:`row_key`.

    ``protocol`` is the dict of every protocol field (task, noise level, size, crop, ...);
    ``sha256`` the image file's (None for rows written before it was recorded); ``defaults``
    the source of the solver's defaults (``paper`` or ``tuned``, :mod:`pnp_restore.tuned`).
    """
    return (dataset, image, sha256, solver, prior, seed, steps, json.dumps(protocol, sort_keys=True), dtype,
            json.dumps(options or {}, sort_keys=True), defaults)  # fmt: skip


def row_key(row: dict) -> tuple:
    """Identity of a row: (dataset, image, image sha256, solver, prior, seed, steps, protocol fields, dtype, options,
    defaults; rows without it ran with the papers' defaults)."""
    return work_key(row["dataset"], row["image"], row.get("sha256"), row["solver"], row["prior"], row["seed"],
                    row.get("steps"), row["protocol"], row.get("dtype", "float32"), row.get("options"),
                    row.get("defaults") or "paper")  # fmt: skip


def keyed_rows(path: str | Path, repair: bool = False) -> dict[tuple, dict]:
    """{:func:`row_key`: row} of a results file (a later duplicate wins); see :func:`read_rows` for ``repair``.

    Raises:
        ConfigError: the file holds a line that is not a benchmark result row.
    """
    out = {}
    for n, row in enumerate(read_rows(path, repair), 1):
        missing = [k for k in KEY_FIELDS if not isinstance(row, dict) or k not in row]
        try:
            if not missing and isinstance(row["protocol"], dict):
                out[row_key(row)] = row
                continue
        except TypeError:  # a field of an unhashable type: not one of our rows
            pass
        raise ConfigError(f"{path} is not a benchmark results file (row {n} lacks or mangles "
                          f"{', '.join(missing) or 'a key field'}); pass the --out file of `pnp-restore bench run`")  # fmt: skip
    return out


# -- results file ----------------------------------------------------------------
def read_rows(path: str | Path, repair: bool = False) -> list[dict]:
    """Rows of a JSON-lines file. A torn (unparsable or unterminated) last line is
    ignored; with ``repair=True`` it is also cut off the file so appends start clean."""
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    rows, good_end, start = [], 0, 0
    while start < len(data):
        nl = data.find(b"\n", start)
        if nl < 0:  # unterminated last line: torn
            break
        line = data[start:nl].strip()
        if line:
            try:
                rows.append(json.loads(line))
            except ValueError:  # JSONDecodeError, or UnicodeDecodeError for a binary file
                if not data[nl + 1 :].strip():
                    break
                if not rows:
                    raise ConfigError(f"{path} is not a JSON-lines results file (it does not start with a JSON line); "
                                      "pass the --out file of `pnp-restore bench run`") from None  # fmt: skip
                raise ConfigError(f"{path} has a corrupt line {line[:60]!r} before its end; fix or remove it") from None
        good_end = start = nl + 1
    if repair and good_end < len(data):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return rows


def append_row(f, row: dict) -> None:
    """Write one row as a JSON line, flushed and fsynced."""
    f.write(json.dumps(row, sort_keys=True) + "\n")
    f.flush()
    os.fsync(f.fileno())


def _os_error(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


class ResultsFile:
    """A results file held by one run: locked on entry, created with its first row.

    ``with ResultsFile(path) as results``: ``results.done`` is :func:`keyed_rows` of the file
    (a torn last line cut off); :meth:`append` writes a row. The lock is ``<path>.lock``,
    taken with a non-blocking :func:`fcntl.flock` (where fcntl exists), so a second run on
    the same file fails at once, naming the process that holds it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock = self._file = None
        self.done: dict[tuple, dict] = {}

    def __enter__(self) -> ResultsFile:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._acquire()
            self.done = keyed_rows(self.path, repair=True)
        except OSError as e:
            self.__exit__(None, None, None)
            if isinstance(e, PnPRestoreError):
                raise
            raise ResultsFileError(f"cannot use results file {self.path}: {_os_error(e)}; check the path and free space") from None
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): unlocked, as before
            return
        for _ in range(10):  # retry if the holder removed the lock file between our open and flock
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                raise ResultsFileError(
                    f"{self.path} is in use by another `bench run` ({self._holder()}, lock {self.lock_path}); "
                    "wait for it to finish or pass another --out"
                ) from None
            try:
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._lock = fd
                return
            os.close(fd)
        raise ResultsFileError(f"cannot lock {self.lock_path}: it keeps being replaced; remove it and run again")

    def _holder(self) -> str:
        try:
            pid = self.lock_path.read_text().strip()
        except OSError:
            pid = ""
        return f"pid {pid}" if pid.isdigit() else "process unknown"

    def append(self, row: dict) -> None:
        """Append ``row`` (creating the file on the first row); a failed write raises :class:`ResultsFileError`."""
        try:
            if self._file is None:
                self._file = open(self.path, "a")
            append_row(self._file, row)
        except OSError as e:
            raise ResultsFileError(
                f"cannot write to {self.path}: {_os_error(e)}; free space and run the same command again "
                "(finished rows are kept)"
            ) from None

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # a failed flush was already reported by append()
            self._file = None
        if self._lock is not None:
            try:  # unlink before unlocking: a waiting opener then sees a new inode and retries
                os.unlink(self.lock_path)
            except OSError:
                pass
            os.close(self._lock)
            self._lock = None


# -- solvers -------------------------------------------------------------------------
def _registry_solver(name: str) -> SolverFn:
    """A registry solver as ``fn(y, op, prior, **kw) -> (x, {"nfe": ...})`` through :func:`pnp_restore.restore`."""
    from ..restoration import restore

    def call(y, operator, prior, **kw):
        x, info = restore(y, operator, prior, solver=name, return_info=True, **kw)
        return x, {"nfe": info.get("nfe"), "options": info.get("options"), "defaults": info.get("defaults"),
                   "schedule": info.get("schedule")}

    call.takes_defaults = True  # restore's defaults= (paper / tuned); see _run_batch
    return call


def _baseline(fn: Callable) -> SolverFn:
    def call(y, operator, prior, task=None, **kw):
        return fn(y, operator, prior, **kw), {"nfe": 0}

    call.is_baseline = True  # see _applies
    return call


def _applies(name: str, fn: SolverFn, proto: _protocols.Protocol) -> bool:
    """False for a baseline that cannot run on ``proto``'s operator (:func:`.baselines.supports`), e.g.
    ``wiener`` on inpainting, and for a registry solver that needs a linear operator on a nonlinear
    task; the operator of a probe image stands for all (only its type matters)."""
    operator = proto.operator(["probe/0"], (1, 3, proto.size, proto.size))
    if getattr(fn, "takes_defaults", False):
        from ..solvers import spec

        return operator.linear or not spec(name).linear
    if not getattr(fn, "is_baseline", False):
        return True
    return _baselines.supports(name, operator)


def _custom(fn: Callable) -> SolverFn:
    def call(y, operator, prior, task=None, **kw):
        r = fn(y, operator, prior, **kw)
        return r if isinstance(r, tuple) else (r, {})

    return call


def resolve_solvers(solvers: Iterable[str] | dict[str, Callable]) -> dict[str, tuple[SolverFn, bool, bool]]:
    """{name: (fn returning (x, info), needs_prior, stochastic)}: baselines, registry solvers, or given callables.

    A callable given in a dict must have the solver signature and return x or (x, info);
    it is taken to need a prior and to be stochastic.
    """
    out = {}
    items = solvers.items() if isinstance(solvers, dict) else ((s, None) for s in solvers)
    missing = _baselines.available()
    for name, fn in items:
        if fn is not None:
            out[name] = _custom(fn), True, True
        elif name in missing:
            warnings.warn(f"skipping baseline {name}: {missing[name]}", stacklevel=2)
        elif name in _baselines.BASELINES:
            out[name] = _baseline(_baselines.BASELINES[name]), False, False
        else:
            from ..solvers import spec

            out[name] = _registry_solver(name), True, spec(name).stochastic
    return out


def _load_prior(spec, device) -> tuple[str, object]:
    if spec is None or spec == "none":
        return "none", None
    if isinstance(spec, str):
        from ..priors import load

        return spec, load(spec).to(device)
    return getattr(spec, "name", type(spec).__name__), spec.to(device)


# -- the run ---------------------------------------------------------------------------
def _rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``rank`` and ``world_size``, each defaulting to torchrun's RANK / WORLD_SIZE (else 0 / 1)."""
    rank = int(os.environ.get("RANK", "0")) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else world_size
    return rank, world_size


def shard_path(out: str | Path, rank: int | None = None, world_size: int | None = None) -> Path:
    """The results file of a rank: ``out`` itself, or ``<stem>.rank<r><suffix>`` when sharded."""
    rank, world_size = _rank_world(rank, world_size)
    out = Path(out)
    return out.with_name(f"{out.stem}.rank{rank}{out.suffix}") if world_size > 1 else out


def _chunks(images: list, size: int) -> list[list]:
    """Split images into runs of at most ``size`` consecutive indices."""
    out: list[list] = []
    for im in images:
        if out and len(out[-1]) < size and out[-1][-1].index + 1 == im.index:
            out[-1].append(im)
        else:
            out.append([im])
    return out


def _save(path: Path, x: Tensor, relative_to: Path, once: bool = False) -> str:
    """Write an 8-bit PNG (skipped if ``once`` and it exists); return its path relative to ``relative_to``."""
    from ..io import write_image

    if not (once and path.is_file()):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, x, overwrite=True)
    return os.path.relpath(path, relative_to)


def run(
    tasks: str | list = "sr4_bicubic@0.05",
    solvers: Iterable[str] | dict[str, Callable] = ("pinv",),
    priors: str | object | list = "builtin",
    data: str | Path | list = (),
    *,
    out: str | Path = "results.jsonl",
    manifest: str | Path | None = None,
    images: int | None = None,
    size: int = 256,
    crop: str = "center",
    steps: int | dict[str, int] | None = None,
    seeds: Iterable[int] = (0,),
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    metrics: Iterable[str] | None = None,
    solver_options: dict[str, dict] | None = None,
    save_images: str | Path | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = True,
    on_row: Callable[[dict], None] | None = None,
    defaults: str = "paper",
) -> list[dict]:
    """Run a benchmark and append its rows to ``out``; return the rows written by this call.

    Args:
        tasks: task ids (``"sr4_bicubic@0.05"``, bare names = all noise levels,
            ``"all"``), comma-separated or a list; :class:`Protocol` objects are used as given.
        solvers: registry solver names (:data:`pnp_restore.solvers.SOLVERS`) and/or
            baselines (``pinv``, ``admm_tv``, ``pnp_bm3d``), or {name: callable}.
        priors: prior source(s) for :func:`pnp_restore.priors.load`, or Prior objects;
            baselines run once without a prior (``prior="none"`` in rows).
        data: dataset folder(s).
        out: JSON-lines results file (appended; completed rows are skipped).
        manifest: optional MANIFEST.tsv to verify the images against.
        images: use the first N images of each folder.
        size, crop: image size and how to reach it (protocol fields).
        steps: solver steps: one int for all registry solvers, or {solver: steps} (also
            for baselines' iterations); None = each solver's published default.
        seeds: solver seeds; each gives its own rows (deterministic solvers and baselines
            run with the first seed only).
        batch_size: images per solver call (default 1 on CPU, 8 on CUDA).
        device, dtype: where and in which precision to run (default: CUDA if available).
        metrics: subset of ``psnr, ssim, lpips_alex, lpips_vgg``; default all, LPIPS
            only if its converted weights exist (a warning says how to get them).
        solver_options: {solver: {hyper-parameter: value}} passed to the solver.
        save_images: folder for small PNGs (ground truth, measurement, restorations) for the report.
        rank, world_size: shard of the work (default from torchrun's env variables).
        on_row: called with each row after it is written.
        defaults: ``"paper"`` (the published per-task settings; what the paper protocols use) or
            ``"tuned"``: each prior's tuned settings (:mod:`pnp_restore.tuned`) where it has them.
            Rows record it (``defaults``; None for baselines), the source actually used (``defaults_used``:
            ``paper`` where a prior has no tuned entry) and a tuned schedule (``schedule``).
    """
    from tqdm import tqdm

    from ..devices import resolve_device

    device = resolve_device(device)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = resolve_device(f"cuda:{os.environ['LOCAL_RANK']}")
    batch_size = batch_size or (8 if device.type == "cuda" else 1)
    rank, world_size = _rank_world(rank, world_size)
    out = shard_path(out, rank, world_size)
    protos = [
        t if isinstance(t, _protocols.Protocol) else p
        for t in ([tasks] if isinstance(tasks, (str, _protocols.Protocol)) else tasks)
        for p in ([t] if isinstance(t, _protocols.Protocol) else _protocols.expand(t, size=size, crop=crop))
    ]
    metric_names = _metric_names(metrics)
    solver_fns = resolve_solvers(solvers)
    needs_prior = any(needs for _, needs, _ in solver_fns.values())
    prior_specs = priors if isinstance(priors, (list, tuple)) else [priors]
    prior_list = [_load_prior(p, device) for p in prior_specs] if needs_prior else []
    folders = _folders(data)
    sets = {}
    for folder in folders:
        for p in {(p.size, p.crop) for p in protos}:
            sets[(str(folder), *p)] = _datasets.load(folder, p[0], p[1], images, manifest)

    # Work units: one batch of one (seed, prior, solver, task, dataset), dealt round-robin to ranks.
    units = []
    seeds = [int(s) for s in seeds]
    for seed in seeds:
        for name, (fn, needs_prior, stochastic) in solver_fns.items():
            if not stochastic and seed != seeds[0]:
                continue  # deterministic methods: one seed is enough
            for prior_name, prior in prior_list if needs_prior else [("none", None)]:
                for proto in protos:
                    if not _applies(name, fn, proto):
                        continue  # a single-task baseline on another task: no rows
                    for folder in folders:
                        for chunk in _chunks(sets[(str(folder), proto.size, proto.crop)], batch_size):
                            units.append((seed, name, fn, prior_name, prior, proto, chunk))
    units = units[rank::world_size]

    written = []
    total = sum(len(u[-1]) for u in units)
    dtype_name = _dtype_name(dtype)
    with ResultsFile(out) as results, tqdm(total=total, disable=not progress, desc="bench", unit="img") as bar:
        for seed, name, fn, prior_name, prior, proto, chunk in units:
            n_steps, options = _steps(steps, name), (solver_options or {}).get(name, {})
            fields = proto.fields()

            def is_done(im, sha) -> bool:
                key = work_key(im.dataset, im.name, sha, name, prior_name, seed, n_steps, fields, dtype_name, options,
                               defaults if getattr(fn, "takes_defaults", False) else "paper")  # fmt: skip
                return key in results.done

            todo = [im for im in chunk if not (is_done(im, im.sha256) or is_done(im, None))]  # None: rows before sha256
            bar.update(len(chunk) - len(todo))
            for batch in _chunks(todo, batch_size):
                rows = _run_batch(
                    batch, proto, name, fn, prior_name, prior, seed, device, dtype, metric_names,
                    n_steps, options, save_images, out.parent, defaults,
                )  # fmt: skip
                for row in rows:
                    results.append(row)
                    written.append(row)
                    if on_row is not None:
                        on_row(row)
                bar.update(len(batch))
    return written


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _folders(data: str | Path | Iterable) -> list[Path]:
    """The dataset folders of ``data``, each once; two different folders may not share a name (rows are labelled by it)."""
    folders: dict[Path, Path] = {}
    for folder in [data] if isinstance(data, (str, Path)) else list(data):
        folders.setdefault(Path(folder).resolve(), Path(folder))
    if not folders:
        raise ConfigError("no dataset given; pass --data DIR (a folder of images)")
    by_name: dict[str, Path] = {}
    for folder in folders.values():
        name = _datasets.dataset_name(folder)
        other = by_name.setdefault(name, folder)
        if other is not folder:
            raise ConfigError(f"--data folders {other} and {folder} have the same name {name!r}, which labels their "
                              "rows; rename one of them (or pass a link with another name)")  # fmt: skip
    return list(folders.values())


def _steps(steps, name: str) -> int | None:
    """Steps for solver ``name``: a dict entry, else the common value (not for baselines, whose
    iteration counts are their own hyper-parameters), else None (the solver's default)."""
    if isinstance(steps, dict):
        return steps.get(name)
    return None if name in _baselines.BASELINES else steps


def _metric_names(metrics: Iterable[str] | None) -> list[str]:
    from .lpips import weights_path

    if metrics is not None:
        names = list(metrics)
        bad = [m for m in names if m not in ALL_METRICS]
        if bad:
            raise ConfigError(f"unknown metric(s) {bad}; choose from {', '.join(ALL_METRICS)}")
        return names
    names = ["psnr", "ssim"]
    for net in ("alex", "vgg"):
        if weights_path(net).is_file():
            names.append(f"lpips_{net}")
        else:
            warnings.warn(
                f"LPIPS-{net} skipped: no converted weights at {weights_path(net)} "
                "(see `pnp-restore bench lpips-weights --help`)",
                stacklevel=3,
            )
    return names


def _run_batch(batch, proto, name, fn, prior_name, prior, seed, device, dtype, metric_names, steps, options, save, out_dir,
               defaults="paper"):  # fmt: skip
    keys = [im.key for im in batch]
    x = torch.cat([im.x for im in batch]).to(device=device, dtype=dtype)
    operator, y = proto.degrade(x, keys)
    solver_seed = seed * SEED_STRIDE + batch[0].index
    # task: registry solvers use the paper's per-task settings (e.g. DPS's zeta) unless options override them.
    kw = dict(sigma_y=proto.sigma_y, seed=solver_seed, task=proto.paper_task, **options)
    if steps is not None:
        kw["steps"] = steps
    takes_defaults = getattr(fn, "takes_defaults", False)
    if takes_defaults:
        kw["defaults"] = defaults
    _metrics.reset_peak_memory(device)
    error, nfe, used, schedule = None, None, options, None
    source = defaults if takes_defaults else None
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    try:
        xh, info = fn(y, operator, prior, **kw)
        nfe, used = info.get("nfe"), info.get("options") or options
        source, schedule = info.get("defaults", source), info.get("schedule")
    except PnPRestoreError as e:  # e.g. DDRM on an operator without SVD: record, do not stop the run
        xh, error = None, f"{type(e).__name__}: {e}"
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = (time.perf_counter() - t0) / len(batch)
    scores = {m: [None] * len(batch) for m in metric_names}
    if xh is not None:
        xh = xh.detach()
        for m in metric_names:
            scores[m] = _metrics.lpips(xh, x, m.split("_")[1]) if m.startswith("lpips") else getattr(_metrics, m)(xh, x)
    peak = _metrics.peak_memory_mb(device)
    rows = []
    for i, im in enumerate(batch):
        row = {
            "dataset": im.dataset, "image": im.name, "sha256": im.sha256, "index": im.index, "task": proto.id,
            "solver": name, "prior": prior_name, "seed": seed, "solver_seed": solver_seed + i,
            "steps": steps, "options": options, "solver_options": used,
            "defaults": defaults if takes_defaults else None, "defaults_used": source, "schedule": schedule,
            "nfe": nfe, "time_s": elapsed, "peak_mem_mb": peak,
            "batch_size": len(batch), "device": device.type, "dtype": _dtype_name(dtype),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "protocol": proto.fields(), "error": error, "finished": time.time(),
            **{m: scores[m][i] for m in metric_names},
        }  # fmt: skip
        if save:
            folder = Path(save) / proto.id / im.dataset / im.name
            row["images"] = {
                "gt": _save(folder / "gt.png", x[i : i + 1], out_dir, once=True),
                "y": _save(folder / "y.png", _visible(y[i : i + 1], x.shape[-2:]), out_dir, once=True),
            }
            if xh is not None:
                row["images"]["x"] = _save(folder / f"{name}-{prior_name}-s{seed}.png", xh[i : i + 1], out_dir)
        rows.append(row)
    return rows


def _visible(y: Tensor, hw) -> Tensor:
    """A measurement shown at the image size (nearest upsampling for super-resolution)."""
    return F.interpolate(y, size=tuple(hw), mode="nearest") if tuple(y.shape[-2:]) != tuple(hw) else y


__all__ = ["run", "read_rows", "keyed_rows", "append_row", "row_key", "ResultsFile", "ResultsFileError", "resolve_solvers",
           "VOLATILE", "ALL_METRICS", "shard_path"]
