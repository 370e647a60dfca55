"""priors.load / available: diffusers folders and hub ids, EDM networks, file errors, precision."""

from __future__ import annotations

import json
import re
import sys
import types

import diffusers
import pytest
import torch

from pnp_restore import priors
from pnp_restore.errors import CheckpointError, ConfigError
from pnp_restore.priors import EDMPrior, edm
from pnp_restore.priors.checkpoints import load_module, read_state_dict


def tiny_unet(out_channels=3):
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=16, in_channels=3, out_channels=out_channels, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8, attention_head_dim=8,
    )
    for p in unet.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return unet.eval()


def x0_reference(unet, prediction, ab, x, t):
    """The network + the published conversion (DDPM eq. 15 / Salimans & Ho v-parameterisation)."""
    ab = ab.view(-1, 1, 1, 1)
    x_t = (ab.sqrt() * (2 * x.double() - 1)).float()
    with torch.no_grad():
        out = unet(x_t, t).sample[:, :3].double()
    x_t = x_t.double()
    if prediction == "v":
        x0 = ab.sqrt() * x_t - (1 - ab).sqrt() * out
    else:
        x0 = (x_t - (1 - ab).sqrt() * out) / ab.sqrt()
    return (x0 + 1) / 2


def test_pipeline_folder_is_exact(tmp_path):
    unet = tiny_unet()
    sched = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    diffusers.DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(tmp_path)
    prior = priors.load(tmp_path)
    inner = prior.prior
    assert (inner.prediction, inner.learned_sigma, inner.multiple, inner.native_size) == ("v", False, 2, (16, 16))
    torch.testing.assert_close(inner.schedule.alphas_cumprod, sched.alphas_cumprod.double(), rtol=1e-4, atol=0)  # diffusers: float32
    t = torch.tensor([3, 400, 990])
    x = torch.rand(3, 3, 16, 16)
    out = prior.denoise(x, inner.schedule.sigmas[t])
    ref = x0_reference(unet, "v", inner.schedule.alphas_cumprod[t], x, t)
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=1e-5)


def test_bare_unet_folder_learned_variance(tmp_path):
    unet = tiny_unet(out_channels=6)
    unet.save_pretrained(tmp_path / "unet")
    prior = priors.load(tmp_path / "unet")  # no scheduler: Ho et al.'s linear schedule, eps
    inner = prior.prior
    assert inner.learned_sigma and inner.prediction == "epsilon"
    torch.testing.assert_close(inner.schedule.betas, priors.betas("linear", 1000))
    t = torch.tensor([10, 700])
    x = torch.rand(2, 3, 16, 16)
    out = prior.denoise(x, inner.schedule.sigmas[t])
    torch.testing.assert_close(out.double(), x0_reference(unet, "eps", inner.schedule.alphas_cumprod[t], x, t), rtol=0, atol=1e-5)



def test_deprecated_attention_keys_load_through_diffusers(tmp_path):
    """Old diffusers checkpoints name attention weights query/key/value/proj_attn: they do not fit
    the meta-built UNet, and diffusers' own renaming loads them; weights that fit nothing fail in one line."""
    from safetensors.torch import load_file, save_file

    tiny_unet().save_pretrained(tmp_path / "new")
    tiny_unet().save_pretrained(tmp_path / "old")
    weights = tmp_path / "old" / "diffusion_pytorch_model.safetensors"
    old_names = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    state = load_file(str(weights))
    renamed = {re.sub(r"\.(to_q|to_k|to_v|to_out\.0)\.", lambda m: f".{old_names[m[1]]}.", k): v for k, v in state.items()}
    assert renamed.keys() != state.keys()
    save_file(renamed, str(weights))
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(priors.load(tmp_path / "old").denoise(x, 0.3), priors.load(tmp_path / "new").denoise(x, 0.3))
    save_file({k: v for k, v in state.items() if k != "conv_in.bias"}, str(weights))
    with pytest.raises(CheckpointError, match=r"with its config.json does not fit: 1 missing keys \(conv_in\.bias\)") as err:
        priors.load(tmp_path / "old")
    assert "\n" not in str(err.value)

def test_uncached_hub_id_fails_without_network_with_instructions(no_network):
    attempts = no_network
    with pytest.raises(CheckpointError, match=r"offline mode is on: on a connected machine run `hf download pnp-restore-tests/no-such-model`"):
        priors.load("pnp-restore-tests/no-such-model")  # the conftest sets HF_HUB_OFFLINE=1
    assert attempts == []  # resolved from the local cache only, no connection tried
    row = next(r for r in priors.available() if r["name"] == "ddpm-cifar10-32")
    assert row["url"] == "https://huggingface.co/google/ddpm-cifar10-32" and row["resolution"] == 32


def test_available_lists_the_presets(tmp_path, monkeypatch):
    monkeypatch.setenv("PNP_RESTORE_HOME", str(tmp_path))
    rows = {r["name"]: r for r in priors.available()}
    assert {"builtin", "ffhq_10m", "imagenet256_uncond", "ddpm-cifar10-32"} <= set(rows)
    assert set(rows["ffhq_10m"]) >= {"resolution", "data_range", "parameterisation", "url", "installed"}
    assert not rows["imagenet256_uncond"]["installed"]
    (tmp_path / "256x256_diffusion_uncond.pt").write_bytes(b"x")
    assert {r["name"]: r for r in priors.available()}["imagenet256_uncond"]["installed"]


def test_unknown_and_missing_sources(tmp_path):
    with pytest.raises(ConfigError, match="unknown prior 'nonsense'; use one of builtin, ffhq_10m"):
        priors.load("nonsense")
    with pytest.raises(CheckpointError, match="does not exist"):
        priors.load(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        priors.load("./missing.safetensors")


def test_truncated_and_pickled_files(tmp_path):
    sd = {"w": torch.randn(64, 64)}
    good = tmp_path / "good.pt"
    torch.save(sd, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint.*download it again"):
        read_state_dict(cut)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x80\x02garbage, not a pickle of weights")  # an unpickling failure, but no class in it
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint"):
        read_state_dict(garbage)
    from safetensors.torch import save_file

    save_file(sd, str(tmp_path / "good.safetensors"))
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "good.safetensors").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated"):
        read_state_dict(tmp_path / "cut.safetensors")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "pickled.pt")
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        read_state_dict(tmp_path / "pickled.pt")
    torch.save({"state_dict": {"module.w": sd["w"]}}, tmp_path / "wrapped.pt")
    assert torch.equal(read_state_dict(tmp_path / "wrapped.pt")["w"], sd["w"])


def test_every_torch_load_in_priors_refuses_pickled_code():
    """Checkpoints are data: each torch.load call in pnp_restore/priors passes weights_only=True."""
    import re
    from pathlib import Path

    calls = [
        (path.name, call)
        for path in Path(priors.__file__).parent.glob("*.py")
        for call in re.findall(r"torch\.load\(([^)]*)\)", path.read_text())
    ]
    assert calls and all("weights_only=True" in call for _, call in calls), calls


def test_loading_assigns_without_copy(tmp_path, monkeypatch):
    calls = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real(*a, **k))
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 3, 1))
    torch.save(net.state_dict(), tmp_path / "n.pt")
    state = read_state_dict(tmp_path / "n.pt")
    assert calls[-1]["mmap"] and calls[-1]["weights_only"]
    model = load_module(lambda: torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 3, 1)), state, "n.pt")
    assert model[0].weight.data_ptr() == state["0.weight"].data_ptr()  # the loaded tensor itself, no copy
    with pytest.raises(CheckpointError, match=r"1 missing keys \(1\.bias\)"):
        load_module(lambda: torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 3, 1)),
                    {k: v for k, v in state.items() if k != "1.bias"}, "n.pt")


# ---------------------------------------------------------------- EDM
MEAN, STD = 0.2, 0.3  # Gaussian data on [-1, 1]


class GaussianD(torch.nn.Module):
    """Exact EDM denoiser D(x; sigma) for N(MEAN, STD^2) data on [-1, 1]."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(scale))

    def forward(self, x, sigma):
        s2 = sigma.view(-1, 1, 1, 1) ** 2
        return MEAN + self.scale * STD**2 / (STD**2 + s2) * (x - MEAN)


def test_edm_prior_rescales_to_unit_range():
    prior = EDMPrior(GaussianD().double())
    assert prior.sigma_min == pytest.approx(0.001) and prior.sigma_max == pytest.approx(40)
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    sigma = torch.tensor([0.05, 0.8], dtype=torch.float64)
    m, s = (MEAN + 1) / 2, STD / 2  # the same Gaussian on [0, 1]
    expected = m + s**2 / (s**2 + sigma.view(-1, 1, 1, 1) ** 2) * (x - m)
    torch.testing.assert_close(prior.denoise(x, sigma), expected, rtol=0, atol=1e-12)
    with pytest.raises(ConfigError):
        EDMPrior(GaussianD(), data_range=(1, 1))


def test_load_edm_from_safetensors_and_json(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    save_file(GaussianD(1.0).state_dict(), str(tmp_path / "d.safetensors"))
    config = {"format": "edm", "class": "tests:GaussianD", "kwargs": {"scale": 0.0}, "sigma_max": 10.0}
    (tmp_path / "d.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="'tests:GaussianD', which is not an allowed architecture"):
        priors.load(tmp_path / "d.safetensors")
    monkeypatch.setitem(edm.ARCHITECTURES, "tests:GaussianD", GaussianD)  # as register_architecture does
    prior = priors.load(tmp_path / "d.safetensors", dtype=torch.float64)
    assert isinstance(prior, EDMPrior) and prior.sigma_max == pytest.approx(5.0)
    assert prior.net.scale.item() == 1.0  # the weights, not the constructor value
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(prior.denoise(x, 0.1), EDMPrior(GaussianD().double()).denoise(x, 0.1))


def test_edm_config_loads_the_builtin_architecture(tmp_path):
    from pnp_restore.priors.builtin import EDMDenoiser, UNetConfig, save_weights

    cfg = UNetConfig(channels=(8, 16), emb_dim=16, groups=4)
    torch.manual_seed(0)
    net = EDMDenoiser(cfg)
    save_weights(net, tmp_path)
    config = {"format": "edm", "class": "pnp_restore.priors.builtin:EDMDenoiser", "kwargs": cfg.to_dict()}
    prior = priors.load(tmp_path / "builtin.safetensors", arch=config)
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(prior.denoise(x, 0.1), EDMPrior(net).denoise(x, 0.1), rtol=0, atol=0)


MARKER_MODULE = """
import pathlib
pathlib.Path({imported!r}).touch()


class Net:
    def __init__(self, **kwargs):
        pathlib.Path({called!r}).touch()
"""


@pytest.mark.parametrize("target", ["subprocess:run", "pnp_marker_module:Net"])
def test_a_config_cannot_import_or_call_code(tmp_path, monkeypatch, target):
    """A model.json beside the weights is data: a class outside the allowed architectures is refused
    before anything is imported or called (before the fix, subprocess.run ran the command)."""
    from safetensors.torch import save_file

    imported, called = tmp_path / "imported", tmp_path / "called"
    (tmp_path / "pnp_marker_module.py").write_text(MARKER_MODULE.format(imported=str(imported), called=str(called)))
    monkeypatch.syspath_prepend(str(tmp_path))
    kwargs = {"args": [sys.executable, "-c", f"open({str(called)!r}, 'w')"]} if target == "subprocess:run" else {}
    save_file(GaussianD().state_dict(), str(tmp_path / "model.safetensors"))
    (tmp_path / "model.json").write_text(json.dumps({"format": "edm", "class": target, "kwargs": kwargs}))
    with pytest.raises(CheckpointError, match="not an allowed architecture.*configs cannot import code") as err:
        priors.load(tmp_path / "model.safetensors")
    assert "\n" not in str(err.value)
    assert not imported.exists() and not called.exists() and "pnp_marker_module" not in sys.modules


# ---------------------------------------------------------------- precision, builtin
def test_dtype_and_channels_last(tmp_path):
    unet = tiny_unet()
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(tmp_path)
    x = torch.rand(2, 3, 16, 16)
    ref = priors.load(tmp_path).denoise(x, 0.3)
    p64 = priors.load(tmp_path, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in p64.parameters())
    torch.testing.assert_close(p64.denoise(x.double(), 0.3).float(), ref, rtol=0, atol=1e-5)
    bf = priors.load(tmp_path, dtype=torch.bfloat16).denoise(x, 0.3)
    assert bf.dtype == torch.float32 and (bf - ref).abs().max() < 0.1
    cl = priors.load(tmp_path, channels_last=True)
    assert cl.prior.model.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl.denoise(x, 0.3), ref, rtol=0, atol=1e-5)


def test_builtin_dispatches_lazily(monkeypatch):
    seen = {}

    def fake_load_builtin(device=None, dtype=None):
        seen.update(device=device, dtype=dtype)
        return EDMPrior(GaussianD())

    fake = types.ModuleType("pnp_restore.priors.builtin")
    fake.load_builtin = fake_load_builtin
    monkeypatch.setitem(sys.modules, "pnp_restore.priors.builtin", fake)
    prior = priors.load("builtin", dtype=torch.float64)
    assert isinstance(prior, EDMPrior) and seen == {"device": None, "dtype": torch.float64}
