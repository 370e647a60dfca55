"""How much memory a restoration needs, measured rather than guessed, and what to do when it does not fit.

A run's peak is modelled as the sum of three parts, each linear in the pixels involved::

    peak ~= image_bytes * H W                     (the pipeline's copies of the image: input, y, output, mask)
          + B * solver_bytes * h w                (the solver's state on the h x w problem it solves)
          + B * net_bytes * min(tile^2, h w)      (the network's activations on what it denoises at once)

``solver_bytes`` and ``net_bytes`` are measured once per (prior architecture, solver, dtype, device)
by :func:`calibrate`: the solver runs two steps with an identity denoiser, and the network
denoises one small image, both on a 64x64 input while :class:`PeakTracker` records the bytes of
the tensors they allocate (the peak of the live total). Fully convolutional networks scale
linearly in pixels; priors with attention (ADM) are calibrated at their native size, which is
what they see once tiled. A safety factor covers what the tracker cannot see (the CPU
allocator's fragmentation, oneDNN scratch buffers), checked against ``/usr/bin/time`` peak RSS
in ``benchmarks/RESULTS.md (section "Photos of any size")``.

:func:`plan_tile` picks the largest tile that fits (no tile when the whole image fits and is
at most :data:`FAST_TILE` pixels on a side), or raises :class:`~pnp_restore.errors.ConfigError` with one line saying what to do.
:func:`out_of_memory_error` turns a real allocator failure into such a line.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .errors import ConfigError

Tensor = torch.Tensor

#: side of the calibration image (pixels).
CALIBRATION_SIZE = 64
#: what the tracker does not see (allocator fragmentation, oneDNN scratch and primitive caches):
#: measured peak RSS minus the CLI's base (about 0.45 GB: Python, torch, the prior) was 0.9..1.5x
#: the unscaled model on 512^2..1024^2 and 1.05x on 6000x4000 (benchmarks/RESULTS.md (section "Photos of any size")).
SAFETY = 1.5
#: bytes per image pixel the CLI pipeline keeps besides the solver: the decoded input, the batch,
#: the measurement, the output (float32 RGB, 12 B each) and an inpainting mask (float64, 8 B), plus
#: the PNG encoding's uint8/float temporaries.
IMAGE_BYTES_PER_PIXEL = 80
#: the smallest tile worth running: below it the overlap dominates the work (and the built-in
#: prior's receptive radius is about 66 pixels).
MIN_TILE = 128
#: tiles are multiples of this (the built-in UNet downsamples twice; ADM networks up to 2^5).
TILE_STEP = 32
#: whole (sub-)problems larger than this side squared are denoised in tiles of at most this side
#: even when they fit, which bounds each activation's size (untested beyond 1024^2). Below it tiles
#: cost more than they save: at 512^2, 256-pixel tiles (overlap 64) took 1.6x the CPU time of the
#: whole image.
FAST_TILE = 1024
#: fraction of ``available`` memory a plan may use (the rest: other processes, slack).
USABLE = 0.85


class PeakTracker(TorchDispatchMode):
    """Peak of the live bytes of the tensors created while it is active (any device).

    Every operator's outputs are recorded by storage; a storage counts until it is freed
    (``StorageWeakRef.expired``). Tensors that existed before (inputs, weights) are not counted.
    Views and in-place results share a storage and count once.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = 0
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for key in [k for k, (ref, _) in self.live.items() if ref.expired()]:
            self.current -= self.live.pop(key)[1]
        given = {_storage_key(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, Tensor)}
        for t in tree_flatten(out)[0]:
            if isinstance(t, Tensor) and not t.is_meta:
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.live and key not in given:  # not an input written in place
                    self.live[key] = (StorageWeakRef(storage), storage.nbytes())
                    self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        return out


def _storage_key(t: Tensor) -> int:
    return 0 if t.is_meta else t.untyped_storage().data_ptr()


def measure_peak(fn: Callable[[], Any]) -> int:
    """Peak bytes of the tensors ``fn()`` allocates (see :class:`PeakTracker`)."""
    tracker = PeakTracker()
    with tracker:
        fn()
    return tracker.peak


@dataclasses.dataclass(frozen=True)
class MemoryModel:
    """Bytes per pixel of a run's parts (see the module docstring)."""

    solver_bytes: float
    net_bytes: float
    image_bytes: float = IMAGE_BYTES_PER_PIXEL

    def peak(self, image: tuple[int, int], batch: int = 1, solved: int | None = None, tile: int | None = None) -> int:
        """Modelled peak bytes (safety factor included).

        Args:
            image: (H, W) of the image.
            batch: images restored together.
            solved: pixels of the largest sub-problem the solver works on (default H W).
            tile: side of the network's tiles (None: whole sub-problems).
        """
        h, w = image
        solved = h * w if solved is None else solved
        at_once = min(solved, tile * tile) if tile else solved
        core = batch * (self.solver_bytes * solved + self.net_bytes * at_once)
        return int(SAFETY * (self.image_bytes * h * w + core))


#: the model for the built-in prior and DDRM in float32 on a CPU (:func:`calibrate`, rounded up):
#: what the CLI checks against before any prior is loaded.
DEFAULT_MODEL = MemoryModel(solver_bytes=220.0, net_bytes=1700.0)

_CACHE: dict[tuple, MemoryModel] = {}


def _network(prior: Any) -> Any:
    """The prior under its tiling wrapper (tiles are what the model's ``tile`` accounts for)."""
    from .priors.wrappers import TiledPrior

    while isinstance(prior, TiledPrior):
        prior = prior.prior
    return prior


def _architecture_key(prior: Any) -> tuple:
    net = _network(prior)
    module = getattr(net, "net", None) or getattr(net, "model", None)
    cfg = getattr(module, "cfg", None)
    params = next(iter(module.parameters()), None) if isinstance(module, torch.nn.Module) else None
    where = (str(params.device), str(params.dtype)) if params is not None else ("cpu", "float32")
    return (type(net).__name__, type(module).__name__, repr(cfg), *where)


class _Identity:
    """A stand-in prior for the solver's share: ``denoise(x, sigma) = x`` (a copy, as a network's output is)."""

    def __init__(self, prior: Any) -> None:
        self.sigma_min, self.sigma_max = getattr(prior, "sigma_min", 1e-3), getattr(prior, "sigma_max", 40.0)
        self.channels = getattr(prior, "channels", None)
        self._sigmas = getattr(prior, "sigmas", None)

    def sigmas(self, steps: int) -> Tensor:
        return self._sigmas(steps)

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        return x.clone()


def calibrate(prior: Any, solver: str = "ddrm", *, device: Any = "cpu", channels: int = 3) -> MemoryModel:
    """Measure ``prior``'s and ``solver``'s bytes per pixel on a small image (cached per architecture).

    The solver's share is measured with an inpainting problem (half the pixels missing) and an
    identity denoiser; the network's with one denoiser call at the calibration size (the prior's
    native size when it has one), differentiated through for solvers that need the gradient.

    Returns:
        The :class:`MemoryModel` (bytes per pixel; float32 solver state, the network in its dtype).
    """
    from . import restore, solvers
    from .operators import Inpainting, random_mask

    key = (_architecture_key(prior), solver, str(device), channels)
    if key in _CACHE:
        return _CACHE[key]
    net = _network(prior)
    channels = getattr(net, "channels", None) or channels
    side = max(getattr(net, "native_size", None) or (CALIBRATION_SIZE,))
    x = torch.full((1, channels, side, side), 0.5, device=device)
    spec = solvers.spec(solver)
    grad = spec.prior == "vp+grad"

    def network() -> None:
        with torch.enable_grad() if grad else torch.inference_mode():
            xi = x.clone().requires_grad_(grad)
            out = net.denoise(xi, 0.5)
            if grad:
                out.sum().backward()

    net_bytes = measure_peak(network) / side**2
    y = x * Inpainting(random_mask((side, side), missing=0.5, seed=0)).mask.to(x)
    op = Inpainting(random_mask((side, side), missing=0.5, seed=0))

    def solve() -> None:
        with torch.enable_grad() if grad else torch.inference_mode():
            restore(y, op, _Identity(net), solver, steps=2, seed=0)

    solver_bytes = measure_peak(solve) / side**2
    _CACHE[key] = model = MemoryModel(solver_bytes=solver_bytes, net_bytes=net_bytes)
    return model


def plan_tile(
    model: MemoryModel,
    image: tuple[int, int],
    available: int | None,
    *,
    batch: int = 1,
    solved: int | None = None,
    tile: int | None = None,
    device: Any = "cpu",
) -> int | None:
    """The network's tile side for this run: ``tile`` if given, else None (whole) or the largest that fits.

    Whole sub-problems larger than :data:`FAST_TILE`^2 pixels are tiled anyway (faster on a CPU).

    Args:
        model: bytes per pixel (:func:`calibrate` or :data:`DEFAULT_MODEL`).
        image: (H, W) of the image.
        available: bytes free on the device (None: unknown, only the speed rule applies).
        batch: images restored together.
        solved: pixels of the largest sub-problem (default the whole image).
        tile: the user's ``--tile`` (0/None: choose).
        device: where it runs (for the advice).

    Raises:
        ConfigError: even :data:`MIN_TILE` tiles do not fit; the line says what to do.
    """
    h, w = image
    solved = h * w if solved is None else solved
    budget = None if available is None else USABLE * available
    if tile:
        candidates = [tile]
    else:
        whole = [None] if solved <= FAST_TILE**2 else []
        top = min(FAST_TILE, TILE_STEP * (math.ceil(math.sqrt(solved) / TILE_STEP) - 1))
        candidates = [*whole, *range(top, MIN_TILE - 1, -TILE_STEP)] or [None]
    for t in candidates:
        if budget is None or model.peak(image, batch, solved, t) <= budget:
            return t
    need = model.peak(image, batch, solved, candidates[-1])
    smallest = candidates[-1] if model.peak(image, batch, solved, MIN_TILE) <= budget else MIN_TILE  # tiles help?
    raise ConfigError(
        f"restoring {batch} image(s) of {w}x{h} at once needs about {_size(need)} of memory "
        f"but {_size(available)} are available; {advice(batch, smallest or MIN_TILE, device)}"
    )


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def advice(batch: int, tile: int | None, device: Any = "cpu") -> str:
    """What to try when a run with ``batch`` images and network tiles ``tile`` (None: whole) does not fit.

    The first that applies: a batch of one, smaller tiles, then a smaller image (or the CPU, whose
    memory is usually larger than a GPU's).
    """
    if batch > 1:
        return "use --batch-size 1" + ("" if tile else " and --tile 256")
    if tile is None or tile > MIN_TILE:
        return f"use --tile {MIN_TILE if tile and tile <= 256 else 256}"
    gpu = str(device).split(":")[0] not in ("cpu", "auto")
    return "downscale or crop the image" + (", or use --device cpu" if gpu else ", or use a machine with more memory")


#: PyTorch's CPU allocator backs allocations of 2 MB and more with transparent huge pages when this
#: is set (c10 ``alloc_cpu``; read once, at the first such allocation).
HUGE_PAGES_ENV = "THP_MEM_ALLOC_ENABLE"


def enable_huge_pages() -> None:
    """Ask PyTorch's CPU allocator for transparent huge pages (unless the environment says otherwise).

    Without them every large activation is a fresh ``mmap`` whose pages fault in one 4 kB page at a
    time: ``inpaint`` on 512x512 took 14.5 million minor page faults and more system than half its
    user time. With them the faults drop about 20x. Call it before the process allocates its first
    tensor of 2 MB (the setting is read once); where the kernel has THP off it changes nothing.
    """
    import os

    os.environ.setdefault(HUGE_PAGES_ENV, "1")


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocator failure (CPU, CUDA or MPS)."""
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    low = str(err).lower()
    return isinstance(err, RuntimeError) and any(
        s in low for s in ("out of memory", "can't allocate memory", "defaultcpuallocator", "mps backend out of memory")
    )


def out_of_memory_error(err: BaseException, *, image: tuple[int, int], batch: int, tile: int | None,
                        device: Any = "cpu") -> ConfigError:
    """The one-line :class:`ConfigError` for an allocator failure ``err`` while restoring ``image`` (H, W)."""
    h, w = image
    where = f" in {tile}x{tile} tiles" if tile else ""
    first = " ".join(str(err).split())[:80]
    return ConfigError(f"ran out of memory restoring {batch} image(s) of {w}x{h}{where} ({first}); "
                       f"{advice(batch, tile, device)}")


__all__ = [
    "DEFAULT_MODEL",
    "MemoryModel",
    "PeakTracker",
    "advice",
    "calibrate",
    "enable_huge_pages",
    "is_out_of_memory",
    "measure_peak",
    "out_of_memory_error",
    "plan_tile",
]
