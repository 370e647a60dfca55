"""The ADM (guided-diffusion) UNet: published key layouts, and exact loading through priors.load."""

from __future__ import annotations

import copy
import gzip
import json
import math
from importlib import resources

import pytest
import torch

from pnp_restore import priors
from pnp_restore.errors import CheckpointError, ConfigError
from pnp_restore.priors.adm import PRESETS, build_adm, timestep_embedding
from pnp_restore.priors.wrappers import PaddedPrior

TINY = dict(
    image_size=32, num_channels=32, num_res_blocks=1, channel_mult="1,2", attention_resolutions="16",
    num_head_channels=16, learn_sigma=True, resblock_updown=True, use_scale_shift_norm=True,
)


def reference_keys() -> dict:
    data = resources.files("pnp_restore.priors").joinpath("data/adm_keys.json.gz").read_bytes()
    return json.loads(gzip.decompress(data))


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_have_the_published_state_dict_layout(name):
    # The lists were generated once from openai/guided-diffusion's own UNetModel (create_model
    # with the preset's flags); building on the meta device costs no memory.
    with torch.device("meta"):
        net = build_adm(name)
    got = [[k, list(v.shape)] for k, v in net.state_dict().items()]
    assert got == reference_keys()[name]


def test_preset_sizes():
    with torch.device("meta"):
        counts = {n: sum(p.numel() for p in build_adm(n).parameters()) for n in PRESETS}
    assert counts == {"ffhq_10m": 93_563_910, "imagenet256_uncond": 552_814_086}


def random_adm(cfg=TINY, seed=0):
    torch.manual_seed(seed)
    net = build_adm(cfg)
    for p in net.parameters():  # published init zeroes the output convs; randomise everything
        torch.nn.init.normal_(p, std=0.05)
    return net.eval()


def test_timestep_embedding_is_sinusoidal_and_accepts_fractions():
    t = torch.tensor([0.0, 2.5])
    e = timestep_embedding(t, 8)
    freqs = torch.exp(-math.log(10000) * torch.arange(4) / 4)
    torch.testing.assert_close(e[1], torch.cat([torch.cos(2.5 * freqs), torch.sin(2.5 * freqs)]))
    assert timestep_embedding(t, 7).shape == (2, 7)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_load_tiny_adm_is_exact(tmp_path, suffix):
    net = random_adm()
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".pt":
        torch.save(net.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file(net.state_dict(), str(path))
    prior = priors.load(path, arch=TINY)
    assert isinstance(prior, PaddedPrior) and prior.pad_multiple == 2 and prior.native_size == (32, 32)
    assert all(not p.requires_grad for p in prior.parameters())
    sch = prior.schedule
    t = torch.tensor([0, 250, 999])
    x = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    ab = sch.alphas_cumprod[t].view(-1, 1, 1, 1)
    with torch.no_grad():
        # reference: the network in float64 + guided-diffusion's _predict_xstart_from_eps
        x_t = ab.sqrt() * (2 * x - 1)
        eps = copy.deepcopy(net).double()(x_t, t.double())[:, :3]
        ref = (((1 / ab).sqrt() * x_t - (1 / ab - 1).sqrt() * eps) + 1) / 2
        out64 = priors.load(path, arch=TINY, dtype=torch.float64).denoise(x, sch.sigmas[t])
        out32 = prior.denoise(x.float(), sch.sigmas[t].float()).double()
    # Exactness in float64 (measured 4e-15): the eps -> x0 formula and the integer timestep.
    # A timestep off by one moves x0 by 1e-3 at t = 250, a missing 1/sqrt(ab) by 2e-5 at t = 0.
    torch.testing.assert_close(out64, ref, rtol=0, atol=1e-10)
    # The float32 network (the default) to float32 accuracy. x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab)
    # amplifies the float32 rounding of eps, whose size depends on the platform's summation order,
    # by 1 / sqrt(ab) (157 at t = 999), so the tolerance scales with it (measured 3.9e-5 at t = 999,
    # 1e-7 at t = 0 and 250, against 3.1e-4 and 2e-6 allowed).
    assert ((out32 - ref).abs() <= 2e-6 / ab.sqrt()).all()


def test_padding_is_applied_for_odd_sizes(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(random_adm().state_dict(), path)
    prior = priors.load(path, arch=TINY)
    x = torch.rand(2, 3, 31, 29)
    assert prior.denoise(x, 0.2).shape == x.shape
    with pytest.raises(RuntimeError):  # the bare network cannot take odd sizes
        prior.prior.denoise(x, 0.2)


def test_sidecar_json_and_preset_detection(tmp_path):
    path = tmp_path / "net.pt"
    torch.save(random_adm().state_dict(), path)
    with pytest.raises(CheckpointError, match="cannot tell the architecture"):
        priors.load(path)
    path.with_suffix(".json").write_text(json.dumps({"format": "adm", **TINY}))
    assert priors.load(path).prior.learned_sigma


def test_wrong_arch_names_the_mismatch(tmp_path):
    path = tmp_path / "net.pt"
    torch.save(random_adm().state_dict(), path)
    other = {**TINY, "num_channels": 64, "learn_sigma": False}
    with pytest.raises(CheckpointError, match=r"does not fit: \d+ wrong shapes \(time_embed\.0\.weight expected \(256, 64\) found \(128, 32\)"):
        priors.load(path, arch=other)
    with pytest.raises(ConfigError, match="unknown ADM flags"):
        priors.load(path, arch={**TINY, "num_chanels": 64})
    with pytest.raises(ConfigError, match="class-conditional"):
        priors.load(path, arch={**TINY, "class_cond": True})


def test_preset_not_installed_and_wrong_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PNP_RESTORE_HOME", str(tmp_path))
    with pytest.raises(CheckpointError, match="download https://.*256x256_diffusion_uncond.pt and save it as"):
        priors.load("imagenet256_uncond")
    torch.save(random_adm().state_dict(), tmp_path / "ffhq_10m.pt")
    with pytest.raises(CheckpointError, match="ffhq_10m does not fit: .*missing keys .*unexpected keys .*wrong shapes"):
        priors.load("ffhq_10m")
    assert next(r for r in priors.available() if r["name"] == "ffhq_10m")["installed"]


@pytest.mark.gpu
def test_half_precision_psnr_on_cuda(tmp_path):
    net = random_adm(dict(TINY, image_size=64, channel_mult="1,2,2"))
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    clean = torch.linspace(0, 1, 64).view(1, 1, 1, -1).expand(2, 3, 64, 64).cuda()
    noisy = clean + 0.1 * torch.randn_like(clean)
    cfg = dict(TINY, image_size=64, channel_mult="1,2,2")
    ref = priors.load(path, arch=cfg, device="cuda").denoise(noisy, 0.1)

    def psnr(a):
        return (-10 * torch.log10(((a - clean) ** 2).mean())).item()

    for dtype in (torch.float16, torch.bfloat16):
        out = priors.load(path, arch=cfg, device="cuda", dtype=dtype).denoise(noisy, 0.1)
        assert out.dtype == torch.float32
        assert abs(psnr(out) - psnr(ref)) < 0.05, dtype
