"""The nonlinear operators: phase retrieval, JPEG (synthetic and from real files), HDR, quantisation,
learned (nonlinear) blur.

Checks: exact values on hand-checkable inputs and against the papers' [-1, 1] formulas, float64
gradcheck of every operator (smooth rounding where it rounds), batch == single runs with
per-sample parameters, float32 vs float64, device/dtype handling, one-line errors, the registry,
and DPS running on each operator with a small Gaussian prior.

JPEG vs real files: on the astronaut crop used here (scikit-image's ``data.astronaut()[100:164, 150:230]``),
against Pillow 13 / libjpeg-turbo, at qualities 5..100 and samplings 4:2:0, 4:2:2, 4:4:4 and grayscale,
the RMS error of the operator applied to the original vs the file's decoded pixels was at most 2.31/255
(smooth rounding, quality 5) and 1.67/255 (exact); at qualities <= 50 at most 0.26 of the RMS change JPEG
itself made. ``JPEG_CASES`` holds the per-case measurements the test bounds (x 1.3). The remaining gap is
libjpeg's fixed-point DCT, whose coefficients round to a neighbouring level now and then.

Limits from deterministic measurements carry a 30 % margin; the DPS misfit limits come from 50
problems (``python tests/calibration/calibrate.py nonlinear_operators`` writes tests/data/calibration_nonlinear_operators.json).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from calibrated import limit
from pnp_restore import operators
from pnp_restore.errors import ConfigError, OperatorError, ShapeError
from pnp_restore.operators import HDR, JPEG, NonlinearBlur, PhaseRetrieval, Quantization, jpeg_operator_from_file
from pnp_restore.operators.dynamic_range import smooth_round
from pnp_restore.operators.jpeg import IJG_LUMINANCE, quality_table
from pnp_restore.priors.gaussian import GaussianPrior, squared_exponential_cov
from pnp_restore.solvers import dps
from pnp_restore.tasks import Task

D = torch.float64


def rand(*shape, seed=0, lo=0.0, hi=1.0, dtype=D):
    g = torch.Generator().manual_seed(seed)
    return (lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)).to(dtype)


class ToyBlurNet(torch.nn.Module):
    """A stand-in for bkse's KernelWizard: a per-image 3x3 kernel from the latent, then a saturating nonlinearity."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(1.5, dtype=D))

    def adaptKernel(self, x, kernel):  # noqa: N802 (bkse's name)
        b, c = x.shape[:2]
        k = torch.softmax(kernel.flatten(1)[:, :9], dim=1).view(b, 1, 3, 3).repeat_interleave(c, 0)
        blurred = torch.nn.functional.conv2d(x.reshape(1, b * c, *x.shape[2:]), k, padding=1, groups=b * c)
        return torch.sigmoid(self.gain * (blurred.view_as(x) - 0.5) * 4)


def toy_blur(**kw) -> NonlinearBlur:
    return NonlinearBlur(ToyBlurNet(), **kw)


# smooth (differentiable) versions of every operator, on small inputs
SMOOTH_OPS = {
    "phase_retrieval": lambda: PhaseRetrieval(2.0),
    "jpeg": lambda: JPEG(quality=20),
    "jpeg_gray": lambda: JPEG(quality=20),
    "hdr": lambda: HDR(2.0),
    "quantization": lambda: Quantization(3),
    "nonlinear_blur": toy_blur,
}
SMALL_INPUT = {"jpeg_gray": (1, 1, 8, 8), "jpeg": (1, 3, 8, 8)}


# ---------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", list(SMOOTH_OPS))
def test_gradcheck_float64(name):
    """Autograd (backward and forward mode, so ``vjp`` and ``jvp``) matches finite differences. Inputs avoid the
    kinks (HDR's clip at 0.25/0.75, JPEG's output clamp) and are fixed, away from rounding jumps."""
    op = SMOOTH_OPS[name]()
    shape = SMALL_INPUT.get(name, (1, 2, 4, 4))
    x = rand(*shape, seed=3, lo=0.3, hi=0.7).requires_grad_(True)
    assert torch.autograd.gradcheck(op.forward, (x,), check_forward_ad=True, fast_mode=True)


def test_jvp_and_vjp_are_adjoint():
    """<J v, u> == <v, J^T u> for the Operator helpers on the smooth JPEG."""
    op, x = JPEG(quality=30), rand(2, 3, 16, 16, seed=1, lo=0.2, hi=0.8)
    v, u = rand(*x.shape, seed=2) - 0.5, rand(*x.shape, seed=3) - 0.5
    lhs = (op.jvp(x, v) * u).sum()
    rhs = (v * op.vjp(x, u)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-10)


def test_smooth_round_modes():
    """Shin & Song's cubic: r + (x - r)^3, derivative 3 (x - r)^2; exact: floor(x + 1/2); straight-through:
    exact value, cubic's derivative."""
    x = torch.tensor([-1.3, -0.5, 0.2, 0.5, 1.4, 2.75], dtype=D, requires_grad=True)
    r = torch.tensor([-1.0, 0.0, 0.0, 1.0, 1.0, 3.0], dtype=D)
    assert torch.equal(smooth_round(x, "exact"), r)
    s = smooth_round(x, "smooth")
    assert torch.allclose(s, r + (x - r) ** 3)
    (g,) = torch.autograd.grad(s.sum(), x)
    assert torch.allclose(g, 3 * (x - r) ** 2)
    st = smooth_round(x, "straight_through")
    assert torch.equal(st.detach(), r)
    (g2,) = torch.autograd.grad(st.sum(), x)
    assert torch.allclose(g2, g)
    with pytest.raises(ConfigError, match="rounding"):
        smooth_round(x, "nearest")


# ---------------------------------------------------------------------------- phase retrieval
def test_phase_retrieval_delta_has_constant_magnitude_and_shape():
    """A delta's spectrum is flat: |FFT| = 1/sqrt(N) (orthonormal), N the padded size; pad = int(o/8 * size)."""
    x = torch.zeros(1, 1, 8, 12, dtype=D)
    x[0, 0, 3, 5] = 0.7
    y = PhaseRetrieval(2.0)(x)
    assert y.shape == (1, 1, 12, 18)  # 8 + 2*2, 12 + 2*3
    assert torch.allclose(y, torch.full_like(y, 0.7 / (12 * 18) ** 0.5), atol=1e-14)


def test_phase_retrieval_parseval_centre_and_ambiguities():
    """||y|| = ||x||; the DC term (= sum x / sqrt(N)) sits at (H'//2, W'//2); translating the content inside the
    frame and rotating it by 180 degrees leave y unchanged."""
    op = PhaseRetrieval(2.0)
    x = rand(2, 3, 16, 16, seed=4)
    x[..., -3:, :] = 0
    x[..., :, -3:] = 0  # room to translate the content by (1, 2) without wrapping
    y = op(x)
    assert torch.allclose(y.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), rtol=1e-12)
    n = y.shape[-1] * y.shape[-2]
    assert torch.allclose(y[..., 12, 12], x.sum((-2, -1)) / n**0.5, rtol=1e-12)
    assert torch.allclose(op(torch.roll(x, (1, 2), (-2, -1))), y, atol=1e-12)
    assert torch.allclose(op(torch.flip(x, (-2, -1))), y, atol=1e-12)


def test_phase_retrieval_matches_the_daps_formula():
    """DAPS: x_pm -> [0, 1], pad int(o/8 * res) zeros, |fftshift(fft2(ifftshift(.), ortho))|."""
    x = rand(1, 3, 32, 32, seed=5)
    x_pm = 2 * x - 1
    pad = int(2.0 / 8.0 * 32)
    z = torch.nn.functional.pad(x_pm * 0.5 + 0.5, (pad,) * 4)
    ref = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(z, dim=(-2, -1)), norm="ortho"), dim=(-2, -1)).abs()
    assert torch.allclose(PhaseRetrieval(2.0)(x), ref, atol=1e-12)


def test_phase_retrieval_x_shape_inverts_the_padding():
    for o in (0.0, 1.0, 2.0, 4.0):
        op = PhaseRetrieval(o)
        for h, w in ((8, 8), (20, 24), (64, 37), (256, 256)):
            y_shape = tuple(op(torch.zeros(1, 1, h, w)).shape)
            assert op.x_shape(y_shape) == (1, 1, h, w)


# ---------------------------------------------------------------------------- HDR and quantisation
def test_hdr_equals_the_papers_pm1_clip_and_is_identity_inside_the_range():
    """DAPS/RED-diff: clip(s x_pm, -1, 1) on [-1, 1] == 2 A(x) - 1; inside [1/2 - 1/(2s), 1/2 + 1/(2s)] A is
    affine, 1/2 + s (x - 1/2), and pinv inverts it; scale 1 is the identity on [0, 1] images."""
    x = rand(3, 3, 8, 8, seed=6)
    for s in (1.0, 2.0, 3.5):
        assert torch.allclose(2 * HDR(s)(x) - 1, torch.clip(s * (2 * x - 1), -1, 1), atol=1e-14)
    assert torch.equal(HDR(1.0)(x), x)
    inside = rand(2, 3, 8, 8, seed=7, lo=0.25, hi=0.75)
    op = HDR(2.0)
    assert torch.allclose(op.pinv(op(inside)), inside, atol=1e-14)
    assert torch.allclose(op(op.pinv(x)), x, atol=1e-14)  # right inverse on every y in [0, 1]


def test_quantization_levels_and_the_red_diff_formula():
    """Levels k / (2^b - 1); RED-diff's floor(x (2^b - 1) + 1/2) exactly (ties up); smooth within 1/(8 L)."""
    x = torch.linspace(0, 1, 301, dtype=D).view(1, 1, 1, -1)
    for b in (1, 2, 3, 8):
        n = 2**b - 1
        y = Quantization(b, rounding="exact")(x)
        assert torch.equal(y, torch.floor(x * n + 0.5) / n)
        assert set((y * n).round().unique().tolist()) == set(range(n + 1))
        assert torch.allclose(y * n, (y * n).round(), atol=1e-12)
        assert (Quantization(b)(x) - y).abs().max() <= 1 / (8 * n) + 1e-12
        assert torch.equal(Quantization(b, rounding="straight_through")(x), y)
    half = torch.full((1, 1, 1, 1), 0.5, dtype=D)
    assert Quantization(1, rounding="exact")(half).item() == 1.0  # tie rounds up, as RED-diff
    assert torch.equal(Quantization(3).pinv(x), x)


# ---------------------------------------------------------------------------- JPEG, synthetic
def test_quality_tables_follow_libjpeg():
    """Quality 50 is the Annex K table; 100 all ones; 10 the table RED-diff hard-codes (80, 55, 50, 80, ...);
    1 is capped at 255 (baseline)."""
    base = torch.tensor(IJG_LUMINANCE, dtype=D)
    assert torch.equal(quality_table(IJG_LUMINANCE, 50), base)
    assert torch.equal(quality_table(IJG_LUMINANCE, 100), torch.ones(8, 8, dtype=D))
    assert quality_table(IJG_LUMINANCE, 10)[0].tolist() == [80, 55, 50, 80, 120, 200, 255, 255]
    assert quality_table(IJG_LUMINANCE, 1).max() == 255
    for bad in (0, 101, 7.5):
        with pytest.raises(ConfigError, match="quality"):
            JPEG(quality=bad)


def test_jpeg_quality_100_is_nearly_identity():
    """No subsampling, quality 100 (all steps 1): exact mode only rounds (DCT coefficients, YCbCr and output
    samples to integers), measured on this crop max |err| 4/255, RMS 0.75/255; smooth rounding 1.87/255 and
    0.41/255; 4:2:0 adds the chroma averaging (smooth: RMS 1.96/255). Limits: measured x 1.3."""
    x = _astronaut()
    for rounding, max_err, rms_err in (("exact", 5.2, 0.98), ("smooth", 2.5, 0.54)):
        d = (JPEG(100, subsampling="4:4:4", rounding=rounding)(x) - x) * 255
        worst, rms = float(d.abs().max()), float(d.pow(2).mean().sqrt())
        assert worst < max_err and rms < rms_err, (rounding, worst, rms)
    d = (JPEG(100)(x) - x) * 255
    assert d.pow(2).mean().sqrt() < 2.6


def test_jpeg_low_quality_is_blocky():
    """Quality 5 on a smooth ramp: the jumps between neighbouring pixels concentrate on the 8x8 block borders
    (measured: the blocks are flat inside, ratio inf; limit 10); at quality 95 there is no such structure
    (measured 1.36; limit 3)."""
    ramp = torch.linspace(0.1, 0.9, 48, dtype=D)
    x = (0.6 * ramp.view(1, 1, 1, -1) + 0.4 * ramp.view(1, 1, -1, 1)).expand(1, 1, 48, 48)
    for q, lo, hi in ((5, 10.0, None), (95, None, 3.0)):
        y = JPEG(q, rounding="exact")(x)
        jumps = (y[..., 1:] - y[..., :-1]).abs().mean((0, 1, 2))  # column j -> j+1
        border = jumps[7::8].mean()
        interior = torch.cat([jumps[k * 8 : k * 8 + 7] for k in range(6)]).mean()
        ratio = float(border / interior)
        assert (lo is None or ratio > lo) and (hi is None or ratio < hi), (q, ratio)


def test_jpeg_pads_odd_sizes_and_is_idempotent_enough():
    """Sides not multiple of 16: padded and cropped back; JPEG(JPEG(x)) ~ JPEG(x) (what pinv(y) = y relies on):
    measured RMS 0.68/255 of re-encoding vs 10.9/255 of the first encoding at quality 10."""
    x = _astronaut()[..., :37, :51]
    op = JPEG(10, rounding="exact")
    y = op(x)
    assert y.shape == x.shape
    rms = lambda t: float(t.pow(2).mean().sqrt() * 255)  # noqa: E731
    assert rms(op(y) - y) < 0.3 * rms(y - x)
    assert torch.equal(op.pinv(y), y)


# ---------------------------------------------------------------------------- JPEG, real files
def _astronaut() -> torch.Tensor:
    from skimage import data

    return torch.from_numpy(data.astronaut()[100:164, 150:230].copy()).permute(2, 0, 1)[None].to(D) / 255


#: (quality, Pillow subsampling code (0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0) or "gray") -> measured RMS error x 255 of
#: the operator (smooth, exact rounding) on the original vs the file's decoded pixels (Pillow 13 / libjpeg-turbo);
#: the RMS change JPEG made was 11.0, 6.2, 3.7, 10.7, 2.5, 6.1, 9.2, 3.7 in order.
JPEG_CASES = {
    (10, 2): (1.35, 0.71), (50, 2): (1.35, 1.19), (90, 2): (1.28, 1.17), (10, 0): (1.32, 0.66),
    (95, 0): (1.24, 0.89), (50, 1): (1.44, 1.58), (10, "gray"): (1.30, 0.71), (75, "gray"): (0.76, 0.64),
}  # fmt: skip


@pytest.mark.parametrize("quality,sampling", list(JPEG_CASES))
def test_jpeg_operator_from_file_reproduces_the_file(tmp_path, quality, sampling):
    """The file's tables and sampling are read; the operator on the original image gives the decoded file within
    its measured error x 1.3 (the rest is libjpeg's fixed-point DCT; repeating chroma samples instead of libjpeg's
    triangular upsampling raises the (10, 4:2:0) exact error to 1.30), and at quality <= 50 within 0.35 of the
    change JPEG made (measured at most 0.26)."""
    x = _astronaut()
    arr = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    path = tmp_path / "photo.jpg"
    if sampling == "gray":
        gray = Image.fromarray(arr).convert("L")
        gray.save(path, quality=quality)
        x = torch.from_numpy(np.asarray(gray, dtype=np.float64))[None, None] / 255
    else:
        Image.fromarray(arr).save(path, quality=quality, subsampling=sampling)
    y, op = jpeg_operator_from_file(path)
    assert y.shape == x.shape and y.dtype == torch.float32 and 0 <= y.min() and y.max() <= 1
    expected = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0", "gray": "4:4:4"}[sampling]
    assert op.subsampling == expected
    assert torch.equal(op.luma_table[0], quality_table(IJG_LUMINANCE, quality))
    y = y.double()
    change = float((y - x).pow(2).mean().sqrt() * 255)
    for rounding, measured in zip(("smooth", "exact"), JPEG_CASES[quality, sampling]):
        op.rounding = rounding
        err = float((op(x) - y).pow(2).mean().sqrt() * 255)
        assert err < 1.3 * measured, (rounding, err, measured)
        if quality <= 50:
            assert err < 0.35 * change, (rounding, err, change)


def test_jpeg_operator_from_file_errors(tmp_path):
    png = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png)
    with pytest.raises(ConfigError, match="not a JPEG"):
        jpeg_operator_from_file(png)
    txt = tmp_path / "b.jpg"
    txt.write_text("hello")
    with pytest.raises(ConfigError, match="cannot read"):
        jpeg_operator_from_file(txt)
    cmyk = tmp_path / "c.jpg"
    Image.new("CMYK", (16, 16)).save(cmyk)
    with pytest.raises(ConfigError, match="CMYK"):
        jpeg_operator_from_file(cmyk)


# ---------------------------------------------------------------------------- nonlinear blur
def test_nonlinear_blur_interface():
    """Without a network: one-line OperatorError saying where the weights come from. With one: adaptKernel(x01, z)
    clipped to [0, 1]; the default latent is 1.2 N(0, I) of shape (1, 512, 2, 2) from ``seed``."""
    with pytest.raises(OperatorError, match="GOPRO_wVAE.pth") as e:
        NonlinearBlur()
    assert "\n" not in str(e.value)
    with pytest.raises(OperatorError, match="nn.Module"):
        NonlinearBlur(lambda x, z: x)
    op = toy_blur()
    assert op.latent.shape == (1, 512, 2, 2) and op.latent.dtype == D
    assert torch.equal(op.latent, toy_blur(seed=0).latent) and not torch.equal(op.latent, toy_blur(seed=1).latent)
    assert 1.0 < float(op.latent.std()) < 1.4
    x = rand(2, 3, 8, 8, seed=8)
    z = op.latent.expand(2, -1, -1, -1)
    assert torch.allclose(op(x), op.network.adaptKernel(x, z).clamp(0, 1))

    class Plain(torch.nn.Module):  # no adaptKernel: called as network(x, z)
        def forward(self, x, z):
            return x * 2 + z.mean()

    assert torch.allclose(NonlinearBlur(Plain(), latent=torch.zeros(1, 4))(x), (2 * x).clamp(0, 1))


# ---------------------------------------------------------------------------- batches, dtypes, devices
def test_batch_equals_single_with_per_sample_parameters():
    x = rand(2, 3, 16, 16, seed=9)
    cases = [
        (JPEG(quality=[10, 60]), [JPEG(10), JPEG(60)]),
        (HDR([2.0, 1.5]), [HDR(2.0), HDR(1.5)]),
        (Quantization([2, 5]), [Quantization(2), Quantization(5)]),
        (PhaseRetrieval(2.0), [PhaseRetrieval(2.0)] * 2),
        (toy_blur(latent=torch.randn(2, 16)), None),
    ]
    for batched, singles in cases:
        yb = batched(x)
        if singles is None:  # per-sample latents
            singles = [toy_blur(latent=batched.latent[i : i + 1]) for i in range(2)]
        for i, op in enumerate(singles):
            assert torch.allclose(yb[i : i + 1], op(x[i : i + 1]), atol=1e-12), batched


@pytest.mark.parametrize("name", list(SMOOTH_OPS))
def test_float32_matches_float64(name):
    """Same result in float32 up to float32 rounding (JPEG: a float32 coefficient can land across a rounding jump,
    so the mean, not the max, difference is bounded there)."""
    op = SMOOTH_OPS[name]()
    shape = (2, 1, 16, 16) if name == "jpeg_gray" else (2, 3, 16, 16)
    x = rand(*shape, seed=10)
    y64, y32 = op(x), op(x.float())
    assert y32.dtype == torch.float32 and y64.dtype == D
    assert (y32.double() - y64).abs().mean() < 1e-5 * max(1.0, float(y64.abs().max()))


def test_to_keeps_float64_buffers_and_follows_the_input():
    op = JPEG(20).to(torch.float32)
    assert op.luma_table.dtype == D and op.dct.dtype == D
    assert op(rand(1, 3, 16, 16).float()).dtype == torch.float32
    assert HDR([2.0, 3.0]).to(torch.float16).scale.dtype == D


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(SMOOTH_OPS))
def test_cuda_matches_cpu(name):
    op = SMOOTH_OPS[name]()
    shape = (2, 1, 16, 16) if name == "jpeg_gray" else (2, 3, 16, 16)
    x = rand(*shape, seed=11)
    assert torch.allclose(op.to("cuda")(x.cuda()).cpu(), op.to("cpu")(x), atol=1e-9)


# ---------------------------------------------------------------------------- errors and registry
def test_bad_arguments_raise_one_line_errors():
    bad = [
        (lambda: PhaseRetrieval(-1), ConfigError),
        (lambda: JPEG(quality=[]), ConfigError),
        (lambda: JPEG(subsampling="4:1:1"), ConfigError),
        (lambda: JPEG(rounding="floor"), ConfigError),
        (lambda: JPEG(luma_table=torch.ones(8, 8)), ConfigError),
        (lambda: JPEG(luma_table=torch.ones(4, 4), chroma_table=torch.ones(4, 4)), ShapeError),
        (lambda: JPEG(luma_table=torch.zeros(8, 8), chroma_table=torch.ones(8, 8)), ConfigError),
        (lambda: HDR(0.0), ConfigError),
        (lambda: Quantization(2.5), ConfigError),
        (lambda: Quantization(0), ConfigError),
        (lambda: JPEG()(torch.rand(1, 2, 16, 16)), ShapeError),
        (lambda: JPEG(quality=[10, 20, 30])(torch.rand(2, 3, 16, 16)), ShapeError),
        (lambda: HDR([1.0, 2.0, 3.0])(torch.rand(2, 3, 4, 4)), ConfigError),
        (lambda: PhaseRetrieval()(torch.rand(3, 4, 4)), ShapeError),
        (lambda: PhaseRetrieval(2.0).x_shape((1, 1, 11, 11)), ShapeError),
        (lambda: toy_blur(latent=torch.zeros(3, 4))(torch.rand(2, 3, 4, 4)), ShapeError),
    ]
    for make, err in bad:
        with pytest.raises(err) as e:
            make()
        assert "\n" not in str(e.value) and str(e.value)


def test_registry_and_tasks():
    expected = {"phase_retrieval": PhaseRetrieval, "jpeg": JPEG, "hdr": HDR, "quantization": Quantization}
    for name, cls in expected.items():
        assert isinstance(operators.get(name), cls) and not operators.get(name).linear
        assert name in operators.NAMES
    assert operators.get("jpeg", quality=30, rounding="exact").rounding == "exact"
    assert operators.get(Task.HDR, scale=3.0).scale.item() == 3.0
    assert operators.get("quantization", bits=4).bits.item() == 4
    assert isinstance(operators.get("nonlinear_blur", network=ToyBlurNet()), NonlinearBlur)
    assert isinstance(operators.get(Task.NONLINEAR_DEBLUR, network=ToyBlurNet()), NonlinearBlur)
    with pytest.raises(OperatorError, match="weights"):
        operators.get("nonlinear_blur")
    with pytest.raises(ConfigError, match="bad arguments"):
        operators.get("jpeg", qf=10)
    tasks = {Task.PHASE_RETRIEVAL: "phase_retrieval", Task.JPEG: "jpeg", Task.HDR: "hdr",
             Task.QUANTIZATION: "quantization", Task.NONLINEAR_DEBLUR: "nonlinear_blur"}  # fmt: skip
    for task, name in tasks.items():
        assert operators.TASK_OPERATORS[task] == name
    for name in ("PhaseRetrieval", "JPEG", "HDR", "Quantization", "NonlinearBlur", "jpeg_operator_from_file"):
        assert name in operators.__all__
    assert "oversample=2.0" in repr(PhaseRetrieval()) and "quality=10" in repr(JPEG())


# ---------------------------------------------------------------------------- DPS on each operator
def gaussian_prior() -> GaussianPrior:
    shape = (1, 8, 8)
    mean = 0.5 + 0.1 * torch.sin(torch.arange(64, dtype=D) / 5).view(shape)
    return GaussianPrior(mean, squared_exponential_cov(shape, std=0.15, length_scale=2.0, nugget=0.01))


# (operator for the measurement (exact rounding), operator for DPS, zeta)
DPS_CASES = {
    "phase_retrieval": (lambda: PhaseRetrieval(2.0), lambda: PhaseRetrieval(2.0), 1.0),
    "jpeg": (lambda: JPEG(20, rounding="exact"), lambda: JPEG(20), 0.3),
    "hdr": (lambda: HDR(2.0), lambda: HDR(2.0), 0.3),
    "quantization": (lambda: Quantization(3, rounding="exact"), lambda: Quantization(3), 0.3),
    "nonlinear_blur": (toy_blur, toy_blur, 0.3),
}


#: DPS test settings: samples per problem, steps; calibration problems
DPS_SAMPLES, DPS_STEPS, DPS_PROBLEMS = 4, 200, 50


def dps_misfit_ratios(name: str, count: int = 1) -> list[float]:
    """Per problem j < count (truth = prior sample seed 100 + j, y = exact A(truth), no noise): the largest over
    its DPS_SAMPLES samples (solver seeds 4j..4j+3) of ||A(x_dps) - y|| / ||A(x_0) - y||, x_0 the same sampler
    with zeta = 0 (prior samples, same seeds). All problems run as one batch."""
    make_meas, make_op, zeta = DPS_CASES[name]
    prior = gaussian_prior()
    truth = prior.sample(count, seed=100).repeat_interleave(DPS_SAMPLES, 0)
    y = make_meas()(truth)
    op = make_op()
    misfit = {}
    for z in (zeta, 0.0):
        x = dps(y, op, prior, steps=DPS_STEPS, zeta=z, seed=0)
        misfit[z] = (op(x) - y).flatten(1).norm(dim=1)
    return (misfit[zeta] / misfit[0.0]).view(count, DPS_SAMPLES).amax(1).tolist()


@pytest.mark.parametrize("name", list(DPS_CASES))
def test_dps_reduces_the_data_misfit(name):
    """DPS (which takes any Operator) on an 8x8 Gaussian prior, 4 samples, 200 steps, problem 0: every sample's
    misfit ||A(x) - y|| is a fraction of that of the unguided sampler (zeta = 0, same seeds). The limit is the
    largest ratio over 50 problems x 4 samples x 1.3 (``python tests/calibration/calibrate.py nonlinear_operators`` writes
    tests/data/calibration_nonlinear_operators.json); it must stay below 1 to mean anything."""
    bound = limit("nonlinear_operators", f"dps/{name}/ratio_max")
    assert bound < 1.0
    (ratio,) = dps_misfit_ratios(name)
    assert ratio < bound, (ratio, bound)


def calibrate() -> dict[str, dict]:
    """The DPS misfit ratios on problems 0..DPS_PROBLEMS-1 and their limits (max x 1.3); written to
    tests/data/calibration_nonlinear_operators.json by ``python tests/calibration/calibrate.py nonlinear_operators``."""
    from calibrated import summarize

    seeds = f"problems 0-{DPS_PROBLEMS - 1} (truth seed 100+j), solver seeds {DPS_SAMPLES}j..{DPS_SAMPLES}j+3"
    return {f"dps/{n}/ratio_max": summarize(dps_misfit_ratios(n, DPS_PROBLEMS), seeds) for n in DPS_CASES}
