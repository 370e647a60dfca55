"""Reference methods that need no diffusion model.

Each has the solver signature ``fn(y, operator, prior=None, *, sigma_y=0.0,
steps=..., seed=None, **hyper) -> x`` (``prior`` and ``seed`` are ignored: all
are deterministic) and returns (B, C, H, W) images in ``y``'s dtype and on its
device, not clipped. A batch equals the single runs (the classical baselines
below process it image by image).

* ``pinv``: the pseudo-inverse ``A^+ y`` (``operator.pinv``).
* ``admm_tv``: ADMM (Boyd et al., 2011, sec. 6.4.1 form) for
  ``min_x ||A x - y||^2 / 2 + lam TV(x)`` with the isotropic colour TV;
  the TV prox is scikit-image's ``denoise_tv_chambolle`` (Chambolle, 2004),
  the data prox is ``operator.prox``.
* ``pnp_bm3d``: Plug-and-Play ADMM (Venkatakrishnan et al., 2013) with BM3D
  (Dabov et al., 2007; the ``bm3d`` package, optional) as the denoiser and a
  geometric denoiser-strength schedule (the continuation of Chan et al., 2017).

Classical single-task methods (the tools a user already has), each a thin
wrapper around the library function named, applied per image (and per channel
where the library works on one channel):

* inpainting (an :class:`~pnp_restore.operators.Inpainting` operator; its
  ``mask > 0`` = observed): ``opencv_telea`` / ``opencv_ns`` (``cv2.inpaint``,
  Telea 2004 / Bertalmio et al. 2001), ``biharmonic``
  (``skimage.restoration.inpaint_biharmonic``, Damelin & Hoang 2018);
* super-resolution (:class:`~pnp_restore.operators.SuperResolution`):
  ``bicubic`` / ``lanczos`` (``cv2.resize`` with ``INTER_CUBIC`` / ``INTER_LANCZOS4``);
* deblurring (:class:`~pnp_restore.operators.Blur`, its ``.kernel``): ``wiener``
  (``skimage.restoration.wiener``) and ``richardson_lucy``
  (``skimage.restoration.richardson_lucy``);
* denoising (:class:`~pnp_restore.operators.Denoising`): ``nlm``
  (``skimage.restoration.denoise_nl_means``) and ``bm3d`` (the ``bm3d``
  package, optional) at the true ``sigma_y``.

A single-task baseline given another operator raises :class:`OperatorError`
(one line); :func:`supports` answers the same question without running it, so a
caller can skip the pair. Observed pixels / measurements are used as they are
(the inpainting and super-resolution baselines do not denoise).

The hyper-parameters are hand-set defaults for images on [0, 1], not tuned per
task (no paper publishes settings for this exact protocol); they are keyword
arguments so a sweep can override them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ..errors import ConfigError, OperatorError, ShapeError

Tensor = torch.Tensor


def _to_numpy(y: Tensor) -> np.ndarray:
    """(B, C, H, W) tensor -> (B, H, W, C) float64 array on the CPU."""
    return y.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()


def _from_numpy(arr: list[np.ndarray] | np.ndarray, like: Tensor) -> Tensor:
    """(B, H, W, C) arrays -> (B, C, H, W) tensor in ``like``'s dtype and on its device."""
    out = torch.from_numpy(np.ascontiguousarray(np.stack(arr), dtype=np.float64)).permute(0, 3, 1, 2)
    return out.to(device=like.device, dtype=like.dtype)


def _per_image(fn: Callable[[np.ndarray], np.ndarray], x: Tensor) -> Tensor:
    """Apply a numpy (H, W, C) -> (H', W', C) function to each sample of x (B, C, H, W)."""
    return _from_numpy([fn(a) for a in _to_numpy(x)], x)


def _admm(y: Tensor, operator, denoise: Callable[[Tensor, float], Tensor], rhos: list[float], sigma_y: float) -> Tensor:
    """Scaled ADMM: x = prox_data(z - u; rho), z = denoise(x + u, rho), u += x - z; returns z.

    The data term is ``||A x - y||^2 / (2 sigma_y^2)`` (``operator.prox``; at sigma_y = 0
    the x-step is the projection onto ``A x = y``).
    """
    # Start from the data prox of mid-grey (the pseudo-inverse amplifies noise
    # and leaves holes at 0, both far from any image).
    grey = torch.full(operator.x_shape(tuple(y.shape)), 0.5, device=y.device, dtype=y.dtype)
    z = operator.prox(grey, y, rhos[0], sigma_y)
    u = torch.zeros_like(z)
    for rho in rhos:
        x = operator.prox(z - u, y, rho, sigma_y)
        z = denoise(x + u, rho)
        u = u + x - z
    return z


def pinv(y: Tensor, operator, prior=None, *, sigma_y: float = 0.0, steps: int = 1, seed=None, **hyper) -> Tensor:
    """Pseudo-inverse ``A^+ y``: (B, C, H, W), no prior, no noise handling."""
    return operator.pinv(y)


def admm_tv(
    y: Tensor,
    operator,
    prior=None,
    *,
    sigma_y: float = 0.0,
    steps: int = 100,
    seed=None,
    lam: float | None = None,
    rho: float | None = None,
    **hyper,
) -> Tensor:
    """ADMM-TV: ``min_x ||A x - y||^2 / 2 + lam TV(x)``, ``steps`` iterations.

    Defaults: ``lam = max(sigma_y, 0.005)`` (TV weight of the order of the noise
    std, small for noiseless data), ``rho = 10 lam`` (TV prox weight ``lam / rho``
    = 0.1 per iteration).
    """
    from skimage.restoration import denoise_tv_chambolle

    lam = max(float(sigma_y), 0.005) if lam is None else float(lam)
    rho = 10 * lam if rho is None else float(rho)
    if lam <= 0 or rho <= 0:
        raise ConfigError(f"admm_tv needs lam > 0 and rho > 0; got lam={lam}, rho={rho}")

    def tv(v: Tensor, r: float) -> Tensor:
        return _per_image(lambda a: denoise_tv_chambolle(a, weight=lam / r, channel_axis=-1), v)

    # ||Ax-y||^2/2 is operator.prox's data term with sigma_y = 1.
    return _admm(y, operator, tv, [rho] * int(steps), 1.0)


def pnp_bm3d(
    y: Tensor,
    operator,
    prior=None,
    *,
    sigma_y: float = 0.0,
    steps: int = 8,
    seed=None,
    sigma_start: float = 0.1,
    sigma_end: float | None = None,
    **hyper,
) -> Tensor:
    """PnP-ADMM with BM3D: ``steps`` iterations, denoiser std decreasing geometrically
    from ``sigma_start`` to ``sigma_end`` (default ``max(sigma_y, 0.01)``); the ADMM
    penalty of a step is ``rho = 1 / sigma^2``, i.e. the data weight follows the denoiser.
    Raises :class:`ConfigError` if the ``bm3d`` package is not installed (``pip install bm3d``).
    """
    try:
        import bm3d
    except ImportError:
        raise ConfigError("pnp_bm3d needs the bm3d package; pip install bm3d (or pnp-restore[bench])") from None
    sigma_end = max(float(sigma_y), 0.01) if sigma_end is None else float(sigma_end)
    n = int(steps)
    sigmas = [sigma_start * (sigma_end / sigma_start) ** (i / max(n - 1, 1)) for i in range(n)]

    def denoise(v: Tensor, rho: float) -> Tensor:
        s = 1 / math.sqrt(rho)
        return _per_image(lambda a: bm3d.bm3d_rgb(a, s) if a.shape[-1] == 3 else bm3d.bm3d(a, s), v)

    return _admm(y, operator, denoise, [1 / s**2 for s in sigmas], float(sigma_y))


# -- classical single-task baselines ------------------------------------------------------
def _per_channel(fn: Callable[[np.ndarray, int], np.ndarray], a: np.ndarray) -> np.ndarray:
    """Apply ``fn(channel (H, W), c) -> (H', W')`` to each channel of ``a`` (H, W, C)."""
    return np.stack([fn(np.ascontiguousarray(a[..., c]), c) for c in range(a.shape[-1])], axis=-1)


def _kind(operator) -> str:
    from ..operators import Blur, Denoising, Inpainting, SuperResolution

    for cls, kind in ((Inpainting, "inpainting"), (SuperResolution, "super_resolution"), (Blur, "deblurring"),
                      (Denoising, "denoising")):  # fmt: skip
        if isinstance(operator, cls):
            return kind
    return "other"


def _require(name: str, operator) -> None:
    """Raise :class:`OperatorError` unless baseline ``name`` handles ``operator``."""
    if not supports(name, operator):
        what = {"inpainting": "inpainting (an Inpainting operator with a .mask)",
                "super_resolution": "super-resolution (a SuperResolution operator with a .scale)",
                "deblurring": "deblurring (a Blur operator with a .kernel)",
                "denoising": "denoising (the Denoising operator)"}[_TASK[name]]  # fmt: skip
        got = type(operator).__name__
        raise OperatorError(f"baseline {name} only does {what}, not {got}; use pinv or admm_tv (any operator) for this task")


def _observed(y: Tensor, operator) -> tuple[np.ndarray, np.ndarray]:
    """(values (B, H, W, C), observed (B, H, W, C) bool) of an inpainting measurement: ``y / mask`` where ``mask > 0``."""
    mask = operator.mask.detach().to("cpu", torch.float64)
    b, c, h, w = y.shape
    if mask.shape[-2:] != (h, w) or mask.shape[0] not in (1, b) or mask.shape[1] not in (1, c):
        raise ShapeError(f"inpainting mask {tuple(mask.shape)} does not fit the measurement {tuple(y.shape)}; "
                         "pass the operator that made y")  # fmt: skip
    m = _to_numpy(mask.expand(b, c, h, w))
    seen = m > 0
    vals = np.where(seen, _to_numpy(y) / np.where(seen, m, 1.0), 0.0)
    return vals, seen


def _opencv_inpaint(name: str, flag_name: str, y: Tensor, operator, radius: float) -> Tensor:
    import cv2

    _require(name, operator)
    if radius <= 0:
        raise ConfigError(f"{name} needs radius > 0 (pixels); got {radius}")
    flag = getattr(cv2, flag_name)
    vals, seen = _observed(y, operator)

    def one(v: np.ndarray, s: np.ndarray) -> np.ndarray:
        return _per_channel(
            lambda ch, c: cv2.inpaint((255 * ch).astype(np.float32), (~s[..., c]).astype(np.uint8), float(radius), flag)
            / 255,
            v,
        )

    return _from_numpy([one(v, s) for v, s in zip(vals, seen)], y)


def opencv_telea(y: Tensor, operator, prior=None, *, sigma_y: float = 0.0, steps: int = 1, seed=None,
                 radius: float = 3.0, **hyper) -> Tensor:  # fmt: skip
    """Fast-marching inpainting (Telea, J. Graphics Tools 2004): ``cv2.inpaint(..., cv2.INPAINT_TELEA)``.

    Missing pixels are those with ``operator.mask == 0``; observed ones keep ``y / mask``.
    Each channel is inpainted as a 1-channel float32 image on the 0..255 scale
    (OpenCV accepts float32 only with one channel), so there is no 8-bit
    quantisation; OpenCV's 3-channel uint8 path gives the same values up to that
    rounding (both treat channels independently). The 0..255 scale matters: Telea's
    weights assume it (on [0, 1] float input the fill overshoots to [-0.6, 2] on a
    smooth ramp). ``radius``: OpenCV's ``inpaintRadius`` (px), 3 as in its examples.
    Inpainting only: other operators raise :class:`OperatorError`.
    """
    return _opencv_inpaint("opencv_telea", "INPAINT_TELEA", y, operator, radius)


def opencv_ns(y: Tensor, operator, prior=None, *, sigma_y: float = 0.0, steps: int = 1, seed=None,
              radius: float = 3.0, **hyper) -> Tensor:  # fmt: skip
    """Navier-Stokes inpainting (Bertalmio, Bertozzi & Sapiro, CVPR 2001): ``cv2.inpaint(..., cv2.INPAINT_NS)``.

    As :func:`opencv_telea` (per-channel float32 on 0..255, no quantisation, ``radius`` 3 px).
    """
    return _opencv_inpaint("opencv_ns", "INPAINT_NS", y, operator, radius)


def biharmonic(y: Tensor, operator, prior=None, *, sigma_y: float = 0.0, steps: int = 1, seed=None,
               split_into_regions: bool = False, **hyper) -> Tensor:  # fmt: skip
    """Biharmonic inpainting (Damelin & Hoang, 2018): ``skimage.restoration.inpaint_biharmonic``.

    float64; one call with ``channel_axis=-1`` when the mask is shared by the channels
    (all benchmark masks), else one call per channel. Inpainting only (:class:`OperatorError` otherwise).
    """
    from skimage.restoration import inpaint_biharmonic

    _require("biharmonic", operator)
    vals, seen = _observed(y, operator)
    out = []
    for v, s in zip(vals, seen):
        if (s == s[..., :1]).all():
            out.append(inpaint_biharmonic(v, ~s[..., 0], split_into_regions=split_into_regions, channel_axis=-1))
        else:
            out.append(_per_channel(lambda ch, c: inpaint_biharmonic(ch, ~s[..., c], split_into_regions=split_into_regions), v))
    return _from_numpy(out, y)


def _resize(name: str, interpolation: str, y: Tensor, operator) -> Tensor:
    import cv2

    _require(name, operator)
    s = operator.scale
    h, w = y.shape[-2] * s, y.shape[-1] * s
    flag = getattr(cv2, interpolation)

    def one(a: np.ndarray) -> np.ndarray:
        out = cv2.resize(a, (w, h), interpolation=flag)
        return out.reshape(h, w, a.shape[-1])  # cv2 drops a single channel axis

    return _per_image(one, y)


def bicubic(y: Tensor, operator, prior=None, *, sigma_y: float = 0.0, steps: int = 1, seed=None, **hyper) -> Tensor:
    """Bicubic upsampling by the operator's ``scale``: ``cv2.resize(..., interpolation=cv2.INTER_CUBIC)``.

    OpenCV's cubic (Keys, a = -0.75), pixel-centre aligned like the MATLAB ``imresize``
    downsampling of the benchmark; float64, per image. Super-resolution only.
    """
    return _resize("bicubic", "INTER_CUBIC", y, operator)


def lanczos(y: Tensor, operator, prior=None, *, sigma_y: float = 0.0, steps: int = 1, seed=None, **hyper) -> Tensor:
    """Lanczos upsampling (8x8 window, a = 4) by the operator's ``scale``:
    ``cv2.resize(..., interpolation=cv2.INTER_LANCZOS4)``; float64, per image. Super-resolution only."""
    return _resize("lanczos", "INTER_LANCZOS4", y, operator)


def _kernels(operator, b: int) -> list[np.ndarray]:
    """The blur kernel of each of ``b`` images, (kh, kw) float64 (a shared kernel is repeated)."""
    k = operator.kernel.detach().to("cpu", torch.float64)[:, 0].numpy()
    if k.shape[0] not in (1, b):
        raise ShapeError(f"Blur has {k.shape[0]} per-sample kernels but the batch has {b} images; pass 1 or {b}")
    return [k[min(i, k.shape[0] - 1)] for i in range(b)]


def _pad(a: np.ndarray, k: np.ndarray, mode: str, width: float = 0.5) -> tuple[np.ndarray, tuple[slice, slice]]:
    """``a`` (H, W, C) padded by ``width`` x the kernel size (numpy ``mode``), and the slices of the original."""
    if k.shape[0] > a.shape[0] or k.shape[1] > a.shape[1]:
        raise ShapeError(f"blur kernel {k.shape[0]}x{k.shape[1]} is too large for a {a.shape[0]}x{a.shape[1]} image")
    ph, pw = int(width * k.shape[0]) + 1, int(width * k.shape[1]) + 1
    return np.pad(a, ((ph, ph), (pw, pw), (0, 0)), mode=mode), (slice(ph, ph + a.shape[0]), slice(pw, pw + a.shape[1]))


#: numpy padding that extends an image the way each Blur boundary does.
_NP_PAD = {"circular": "wrap", "reflect": "reflect"}


def wiener(y: Tensor, operator, prior=None, *, sigma_y: float = 0.0, steps: int = 1, seed=None,
           balance: float | None = None, **hyper) -> Tensor:  # fmt: skip
    """Wiener-Hunt deconvolution (Orieux et al., JOSA A 2010): ``skimage.restoration.wiener``
    with the operator's kernel and scikit-image's default Laplacian regulariser.

    ``x = F^-1[conj(K) Y / (|K|^2 + balance |L|^2)]``, per channel, float64. The
    balance is the noise-to-signal ratio of the Laplacian prior: ``balance =
    (max(sigma_y, 0.001) / 0.1)^2`` by default, i.e. Laplacian responses of natural
    images of std about 0.1 on [0, 1]; the floor keeps the noiseless case stable.
    Hand-set, checked only coarsely: of 0.05 / 0.1 / 0.2 for the std and floors
    0.001 / 0.005, 0.1 / 0.001 was best or within 0.1 dB of it on 4 CBSD68 64 px
    crops for both blur tasks at sigma_y 0.025 and 0.05 (0.2 is better noiseless). Chosen over ``unsupervised_wiener`` because the noise
    level is known here and the Gibbs sampler of the latter is stochastic and
    slower. The FFT model is circular, exact for ``padding="circular"``; for
    ``"reflect"`` the measurement is reflect-padded by the kernel half-size first.
    Deblurring only (:class:`OperatorError` otherwise).
    """
    from skimage.restoration import wiener as sk_wiener

    _require("wiener", operator)
    bal = (max(float(sigma_y), 0.001) / 0.1) ** 2 if balance is None else float(balance)
    if bal <= 0:
        raise ConfigError(f"wiener needs balance > 0; got {bal}")
    out = []
    for a, k in zip(_to_numpy(y), _kernels(operator, y.shape[0])):
        if operator.padding == "circular":
            out.append(_per_channel(lambda ch, c: sk_wiener(ch, k, bal, clip=False), a))
        else:
            p, (r, c_) = _pad(a, k, _NP_PAD[operator.padding])
            out.append(_per_channel(lambda ch, c: sk_wiener(ch, k, bal, clip=False), p)[r, c_])
    return _from_numpy(out, y)


def richardson_lucy(y: Tensor, operator, prior=None, *, sigma_y: float = 0.0, steps: int = 30, seed=None,
                    pad: float = 2.0, **hyper) -> Tensor:  # fmt: skip
    """Richardson-Lucy deconvolution (Richardson 1972; Lucy 1974): ``skimage.restoration.richardson_lucy``,
    ``steps`` iterations (default 30), the operator's kernel, per channel, float64.

    scikit-image convolves with zero boundary (``mode="same"``), so the measurement is
    first padded the way the operator extends the image (``wrap`` for circular,
    ``reflect`` for reflect blur) by ``pad`` (default 2) x the kernel size, and the
    result cropped: the zero-boundary error creeps inwards with the iterations
    (measured, 61 px motion blur, 64 px image, 30 iterations: 12.7 dB with half a
    kernel of padding, 15.0 dB with one kernel, 22.8 dB with two).
    RL needs non-negative data: ``y`` is clipped at 0 (noise makes a few pixels
    negative). Even-sized kernels get a zero row/column appended so the centre
    stays at ``k // 2`` (the :class:`Blur` convention). ``clip=False``: the result is
    not clipped to [-1, 1]. Deblurring only (:class:`OperatorError` otherwise).
    """
    from skimage.restoration import richardson_lucy as sk_rl

    _require("richardson_lucy", operator)
    n = int(steps)
    if n < 1:
        raise ConfigError(f"richardson_lucy needs steps >= 1; got {steps}")
    out = []
    for a, k in zip(_to_numpy(y), _kernels(operator, y.shape[0])):
        k = np.pad(k, ((0, 1 - k.shape[0] % 2), (0, 1 - k.shape[1] % 2)))
        p, (r, c_) = _pad(np.clip(a, 0.0, None), k, _NP_PAD[operator.padding], width=pad)
        out.append(_per_channel(lambda ch, c: sk_rl(ch, k, num_iter=n, clip=False), p)[r, c_])
    return _from_numpy(out, y)


def nlm(y: Tensor, operator, prior=None, *, sigma_y: float = 0.0, steps: int = 1, seed=None,
        patch_size: int = 5, patch_distance: int = 6, h_factor: float = 0.6, **hyper) -> Tensor:  # fmt: skip
    """Non-local means (Buades, Coll & Morel, CVPR 2005): ``skimage.restoration.denoise_nl_means``.

    ``fast_mode=True``, ``sigma = sigma_y`` (the true noise std), ``h = 0.6 sigma_y``,
    5x5 patches searched within 6 px (13x13 window), ``channel_axis=-1`` (one
    patch distance over the colour channels): the settings scikit-image's
    gallery gives for the fast mode with a known sigma. float64, per image.
    At ``sigma_y = 0`` there is nothing to remove and ``y`` is returned.
    Denoising only (:class:`OperatorError` otherwise).
    """
    from skimage.restoration import denoise_nl_means

    _require("nlm", operator)
    s = float(sigma_y)
    if s <= 0:
        return y.clone()
    return _per_image(lambda a: denoise_nl_means(a, patch_size=int(patch_size), patch_distance=int(patch_distance),
                                                 h=h_factor * s, fast_mode=True, sigma=s, channel_axis=-1), y)


def bm3d(y: Tensor, operator, prior=None, *, sigma_y: float = 0.0, steps: int = 1, seed=None, **hyper) -> Tensor:
    """BM3D (Dabov et al., IEEE TIP 2007; the ``bm3d`` package of Mäkinen et al. 2020) at the true ``sigma_y``.

    ``bm3d.bm3d_rgb`` (CBM3D in the opponent colour space) for 3 channels, ``bm3d.bm3d``
    for one (and per channel otherwise), both stages, the package's default profile;
    float64, per image. At ``sigma_y = 0`` ``y`` is returned. Optional: raises
    :class:`ConfigError` without the ``bm3d`` package (``pip install bm3d`` or
    ``pnp-restore[bench]``). Denoising only (:class:`OperatorError` otherwise).
    """
    _require("bm3d", operator)
    try:
        import bm3d as _bm3d
    except ImportError:
        raise ConfigError("baseline bm3d needs the bm3d package; pip install bm3d (or pnp-restore[bench])") from None
    s = float(sigma_y)
    if s <= 0:
        return y.clone()

    def one(a: np.ndarray) -> np.ndarray:
        if a.shape[-1] == 3:
            return _bm3d.bm3d_rgb(a, s)
        return _per_channel(lambda ch, c: _bm3d.bm3d(ch, s), a)

    return _per_image(one, y)


#: the task of each single-task baseline (others take any linear operator).
_TASK: dict[str, str] = {
    "opencv_telea": "inpainting", "opencv_ns": "inpainting", "biharmonic": "inpainting",
    "bicubic": "super_resolution", "lanczos": "super_resolution",
    "wiener": "deblurring", "richardson_lucy": "deblurring",
    "nlm": "denoising", "bm3d": "denoising",
}  # fmt: skip

#: baselines that need the optional ``bm3d`` package.
_NEEDS_BM3D = ("pnp_bm3d", "bm3d")


def supports(name: str, operator) -> bool:
    """Whether baseline ``name`` can run on ``operator`` (cheap: a type check, nothing is computed).

    The single-task baselines take only their operator class (``Inpainting``,
    ``SuperResolution``, ``Blur``, ``Denoising``); ``pinv``, ``admm_tv`` and
    ``pnp_bm3d`` take any linear operator. Unknown names raise :class:`ConfigError`.
    """
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    if not getattr(operator, "linear", True):
        return False
    return name not in _TASK or _kind(operator) == _TASK[name]


def is_baseline(name: str) -> bool:
    """Whether ``name`` is a baseline of :data:`BASELINES` (not a diffusion solver)."""
    return name in BASELINES


def available() -> dict[str, str]:
    """{baseline: why it cannot run} for the optional baselines that are missing."""
    try:
        import bm3d as _bm3d  # noqa: F401

        return {}
    except ImportError:
        return {n: "the bm3d package is not installed (pip install bm3d)" for n in _NEEDS_BM3D}


#: baselines by name (solver-like functions).
BASELINES: dict[str, Callable[..., Tensor]] = {
    "pinv": pinv, "admm_tv": admm_tv, "pnp_bm3d": pnp_bm3d,
    "opencv_telea": opencv_telea, "opencv_ns": opencv_ns, "biharmonic": biharmonic,
    "bicubic": bicubic, "lanczos": lanczos,
    "wiener": wiener, "richardson_lucy": richardson_lucy,
    "nlm": nlm, "bm3d": bm3d,
}  # fmt: skip

__all__ = ["pinv", "admm_tv", "pnp_bm3d", "opencv_telea", "opencv_ns", "biharmonic", "bicubic", "lanczos", "wiener",
           "richardson_lucy", "nlm", "bm3d", "BASELINES", "available", "supports", "is_baseline"]  # fmt: skip
