"""The click layer of the command line: help, options reaching the pipeline, usage errors,
one-line errors and exit codes (CliRunner, with the fake prior and solver of ``cli_fakes``
passed as click's ``obj``). The pipeline itself is tested in test_cli_pipeline.py."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli_fakes import Fake, files, image, invoke, mask, python_cli
from pnp_restore.cli import group, main, settings
from pnp_restore.cli.settings import Common, solver_options
from pnp_restore.errors import ConfigError, PnPRestoreError
from pnp_restore.tasks import Task


@pytest.fixture
def fake():
    return Fake()


# --------------------------------------------------------------------------- help


def test_help_lists_all_commands_and_examples():
    res = invoke("--help")
    assert res.exit_code == 0
    for name in ("inpaint", "sr", "deblur", "denoise", "priors", "train-prior", "bench"):
        assert name in res.output
    for name in ("inpaint", "sr", "deblur", "denoise", "priors"):
        res = invoke(name, "--help")
        assert res.exit_code == 0 and "pnp-restore " + name in res.output and "Example" in res.output


def test_option_defaults_are_the_settings_defaults():
    res = invoke("sr", "--help")
    text = " ".join(res.output.split())
    assert "[default: builtin]" in text and f"[default: {settings.DEFAULTS['batch_size']};" in text
    assert f"[default: {settings.DEFAULT_SIGMA_Y};" in text and "[default: ddrm]" in text
    assert "[default: denoiser]" in " ".join(invoke("denoise", "--help").output.split())


_HELP_WITHOUT_TORCH = """
import sys
from pnp_restore.cli import main
for args in (["--help"], ["inpaint", "--help"], ["sr", "--help"], ["deblur", "--help"], ["denoise", "--help"],
             ["priors", "--help"]):
    try:
        main(args, prog_name="pnp-restore")
    except SystemExit as e:
        assert e.code == 0, (args, e.code)
print("torch" in sys.modules, file=sys.stderr)
"""

#: what the modules of pnp_restore.cli may import when they are imported (the rest inside the commands).
_LIGHT = {"__future__", "click", "collections", "dataclasses", "functools", "importlib", "json", "math", "os",
          "pathlib", "shlex", "sys", "time", "typing", "warnings", "pnp_restore.errors", "pnp_restore.tasks"}


def test_cli_modules_import_nothing_heavy_at_module_level():
    import ast

    folder = Path(__file__).parents[1] / "pnp_restore" / "cli"
    for path in sorted(folder.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ("pnp_restore.cli." if node.level == 1 else "pnp_restore." if node.level == 2 else "") + (node.module or "")
                names = [base.rstrip(".")] if node.module else [f"{base}{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                assert name in _LIGHT or name.split(".")[0] in _LIGHT or name.startswith("pnp_restore.cli"), \
                    f"{path.name} imports {name} at module level; import it inside the command"


def test_help_imports_no_torch():
    res = subprocess.run([sys.executable, "-c", _HELP_WITHOUT_TORCH], capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0 and res.stderr.strip().splitlines()[-1] == "False", res.stderr


def test_unavailable_lazy_command_is_one_line(monkeypatch):
    monkeypatch.setitem(group.Group.lazy, "bogus", ("pnp_restore._no_such_module", "x", "Nothing."))
    res = CliRunner().invoke(main, ["--help"])
    assert "bogus" in res.output and "Nothing." in res.output
    res = CliRunner().invoke(main, ["bogus", "--anything"])
    assert res.exit_code == 1 and "Error: `pnp-restore bogus` is unavailable" in res.output


def test_help_and_docs_state_the_mask_rule():
    res = invoke("inpaint", "--help")
    assert "not pure black is filled" in " ".join(res.output.split())
    docs = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    assert "--mask-threshold" in docs and "not pure black" in docs


# --------------------------------------------------------------------------- inpaint


def test_inpaint_image_mask_writes_result_and_sidecar(tmp_path, fake):
    arr = image(tmp_path / "photo.png")
    m = mask(tmp_path / "mask.png")
    res = invoke("inpaint", tmp_path / "photo.png", tmp_path / "mask.png", "-q", fake=fake)
    assert res.exit_code == 0, res.output
    assert files(tmp_path) == ["mask.png", "photo.png", "photo_restored.json", "photo_restored.png"]
    out = cv2.imread(str(tmp_path / "photo_restored.png"), cv2.IMREAD_UNCHANGED)
    missing = m > 0
    # A^+ y: observed pixels come back exactly, white (fill) pixels were zeroed in y.
    assert np.array_equal(out[~missing], arr[~missing]) and (out[missing] == 0).all()
    (call,) = fake.calls
    assert call["solver"] == "ddrm" and call["sigma_y"] == settings.DEFAULT_SIGMA_Y and call["seed"] == 0
    assert call["y"].shape == (1, 3, 32, 32) and float(call["y"][0, :, 10, 12].abs().sum()) == 0.0
    assert call["opts"] == {"task": Task.INPAINTING}
    assert fake.prior_kwargs == {"source": "builtin", "arch": None, "device": torch.device("cpu"),
                                 "dtype": torch.float32, "tile": None}
    rec = json.loads((tmp_path / "photo_restored.json").read_text())
    assert rec["command"].startswith("pnp-restore inpaint ") and rec["command"].endswith("mask.png -q")
    assert {k: rec[k] for k in ("solver", "prior", "seed", "steps", "sigma_y", "nfe", "task", "sample")} == {
        "solver": "ddrm", "prior": "builtin", "seed": 0, "steps": 4, "sigma_y": 0.01, "nfe": 4, "task": "inpaint",
        "sample": 0}
    assert rec["version"] and rec["input"].endswith("photo.png") and rec["mask"].endswith("mask.png")


def test_inpaint_mask_invert_and_options_reach_the_solver(tmp_path, fake):
    image(tmp_path / "p.png")
    m = mask(tmp_path / "m.png") > 0
    res = invoke("inpaint", tmp_path / "p.png", tmp_path / "m.png", "--mask-invert", "--solver", "ddnm",
                 "--steps", "3", "--sigma-y", "0", "--seed", "7", "--opt", "eta=0.85", "--opt", "travel_length=2", "-q",
                 "--tile", "64", "--dtype", "bfloat16", fake=fake)
    assert res.exit_code == 0, res.output
    assert fake.prior_kwargs["tile"] == 64 and fake.prior_kwargs["dtype"] == torch.bfloat16
    (call,) = fake.calls
    assert call["solver"] == "ddnm" and call["steps"] == 3 and call["sigma_y"] == 0.0 and call["seed"] == 7
    assert call["opts"] == {"eta": 0.85, "travel_length": 2, "task": "inpainting"}  # task: the paper's per-task defaults
    kept = call["operator"].mask[0, 0].numpy() > 0
    assert np.array_equal(kept, m)  # --mask-invert: white = observed


def test_inpaint_mask_size_mismatch_and_resize(tmp_path, fake):
    image(tmp_path / "p.png")
    mask(tmp_path / "m.png", h=16, w=16, box=(slice(4, 8), slice(4, 8)))
    res = invoke("inpaint", tmp_path / "p.png", tmp_path / "m.png", fake=fake)
    assert res.exit_code == 1 and "Error: m.png is 16x16 but the image is 32x32" in res.output
    assert "--resize-mask" in res.output and "Traceback" not in res.output
    assert files(tmp_path) == ["m.png", "p.png"] and fake.calls == []
    res = invoke("inpaint", tmp_path / "p.png", tmp_path / "m.png", "--resize-mask", "-q", fake=fake)
    assert res.exit_code == 0, res.output
    assert int((fake.calls[0]["operator"].mask == 0).sum()) == 100  # 8x8 plus the soft edge bilinear made
    res = invoke("inpaint", tmp_path / "p.png", tmp_path / "m.png", "--resize-mask", "--mask-threshold", "0.5", "-q",
                 "--overwrite", fake=fake)
    assert res.exit_code == 0 and int((fake.calls[1]["operator"].mask == 0).sum()) == 64


def test_inpaint_antialiased_mask_edges_are_filled(tmp_path, fake):
    image(tmp_path / "p.png")
    m = np.zeros((32, 32), np.uint8)
    m[:4] = 255
    m[4] = 100  # the soft edge of a brush stroke: partly painted over, so partly damaged
    m[5] = 1
    cv2.imwrite(str(tmp_path / "m.png"), m)
    res = invoke("inpaint", tmp_path / "p.png", tmp_path / "m.png", "-q", fake=fake)
    assert res.exit_code == 0 and "Warning: m.png is not binary; pixels with fill intensity above 0 are filled" in res.output
    assert int((fake.calls[0]["operator"].mask == 0).sum()) == 6 * 32  # every non-zero pixel is missing
    assert json.loads((tmp_path / "p_restored.json").read_text())["mask_threshold"] == 0.0
    res = invoke("inpaint", tmp_path / "p.png", tmp_path / "m.png", "-q", "--overwrite", "--mask-threshold", "0.5",
                 fake=fake)
    assert res.exit_code == 0 and int((fake.calls[1]["operator"].mask == 0).sum()) == 4 * 32
    # white = kept: only pure white is kept, the grey edge is filled
    res = invoke("inpaint", tmp_path / "p.png", tmp_path / "m.png", "-q", "--overwrite", "--mask-invert", fake=fake)
    assert res.exit_code == 0 and int((fake.calls[2]["operator"].mask == 1).sum()) == 4 * 32
    for bad in ("1", "-0.1", "nan"):
        res = invoke("inpaint", tmp_path / "p.png", tmp_path / "m.png", "--overwrite", "--mask-threshold", bad, fake=fake)
        assert res.exit_code == 2 and "--mask-threshold" in res.output and len(fake.calls) == 3


def test_second_run_refuses_before_any_work(tmp_path, fake):
    image(tmp_path / "p.png")
    mask(tmp_path / "m.png")
    assert invoke("inpaint", tmp_path / "p.png", tmp_path / "m.png", "-q", fake=fake).exit_code == 0
    before = (tmp_path / "p_restored.png").read_bytes()
    fake.prior_kwargs = {}
    res = invoke("inpaint", tmp_path / "p.png", tmp_path / "m.png", "--seed", "3", fake=fake)
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1] == f"Error: {tmp_path / 'p_restored.png'} exists; pass --overwrite to replace it"
    assert fake.prior_kwargs == {} and len(fake.calls) == 1  # no prior loaded, nothing solved
    assert (tmp_path / "p_restored.png").read_bytes() == before
    res = invoke("inpaint", tmp_path / "p.png", tmp_path / "m.png", "--overwrite", "--seed", "3", "-q", fake=fake)
    assert res.exit_code == 0 and json.loads((tmp_path / "p_restored.json").read_text())["seed"] == 3


def test_inpaint_several_images_need_mask_option(tmp_path, fake):
    for n in "abc":
        image(tmp_path / f"{n}.png")
    res = invoke("inpaint", tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png", fake=fake)
    assert res.exit_code == 2 and "--mask MASK" in res.output
    mask(tmp_path / "m.png")
    res = invoke("inpaint", tmp_path / "a.png", tmp_path / "b.png", "--mask", tmp_path / "m.png", "-o",
                 tmp_path / "out", "-q", "--no-sidecar", fake=fake)
    assert res.exit_code == 0, res.output
    assert files(tmp_path / "out") == ["a.png", "b.png"]


def test_output_never_replaces_the_mask_from_the_command_line(tmp_path, fake, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image(tmp_path / "p.png")
    mask(tmp_path / "m.png")
    before = (tmp_path / "m.png").read_bytes()
    res = invoke("inpaint", "p.png", "m.png", "-o", "m", "--overwrite", fake=fake)  # -o m gives m.png
    assert res.exit_code == 1 and len(res.output.splitlines()) == 1 and "would replace the input" in res.output
    assert fake.prior_kwargs == {} and (tmp_path / "m.png").read_bytes() == before


# --------------------------------------------------------------------------- sr, deblur, denoise


def test_sr_options_reach_the_operator(tmp_path, fake):
    image(tmp_path / "p.png", 8, 8)
    res = invoke("sr", tmp_path / "p.png", "--scale", "3", "--kind", "avgpool", "-q", fake=fake)
    assert res.exit_code == 0, res.output
    (call,) = fake.calls
    assert call["operator"].scale == 3 and call["opts"] == {"task": Task.SUPER_RESOLUTION}
    assert cv2.imread(str(tmp_path / "p_restored.png")).shape == (24, 24, 3)
    assert json.loads((tmp_path / "p_restored.json").read_text())["kind"] == "avgpool"


def test_deblur_kernels(tmp_path, fake):
    image(tmp_path / "b.png", 20, 24)
    res = invoke("deblur", tmp_path / "b.png", "-q", "--no-sidecar", "--steps", "1", fake=fake)
    assert res.exit_code == 0, res.output
    op = fake.calls[-1]["operator"]
    assert fake.calls[-1]["solver"] == "diffpir" and op.padding == "circular"
    assert fake.calls[-1]["opts"] == {"task": Task.GAUSSIAN_DEBLUR}
    assert tuple(op.kernel.shape[-2:]) == (19, 19)  # 61 capped to the image, made odd
    res = invoke("deblur", tmp_path / "b.png", "--kernel", "motion:0.5", "--kernel-size", "9", "--padding",
                 "reflect", "-q", "--overwrite", "--no-sidecar", "--steps", "1", fake=fake)
    assert res.exit_code == 0, res.output
    op = fake.calls[-1]["operator"]
    assert tuple(op.kernel.shape[-2:]) == (9, 9) and op.padding == "reflect"
    assert fake.calls[-1]["opts"] == {"task": Task.MOTION_DEBLUR}
    k = np.zeros((5, 5), np.uint8)
    k[2, 1:4] = 255
    cv2.imwrite(str(tmp_path / "k.png"), k)
    res = invoke("deblur", tmp_path / "b.png", "--kernel", tmp_path / "k.png", "-q", "--overwrite", "--no-sidecar",
                 "--steps", "1", fake=fake)
    assert res.exit_code == 0, res.output
    kern = fake.calls[-1]["operator"].kernel.reshape(5, 5)
    assert torch.allclose(kern[2, 1:4].double(), torch.full((3,), 1 / 3, dtype=torch.float64))
    for bad, msg in (("gaussian:x", "not a number"), ("blob:1", "not gaussian:STD")):
        res = invoke("deblur", tmp_path / "b.png", "--kernel", bad, "--overwrite", fake=fake)
        assert res.exit_code == 1 and msg in res.output


def test_kernel_file_is_an_input_no_output_may_replace(tmp_path, fake):
    image(tmp_path / "p.png")
    k = np.zeros((3, 3), np.uint8)
    k[1, 1] = 255
    cv2.imwrite(str(tmp_path / "k.png"), k)
    res = invoke("deblur", tmp_path / "p.png", "--kernel", tmp_path / "k.png", "-o", tmp_path / "k.png", "--overwrite",
                 fake=fake)
    assert res.exit_code == 1 and "would replace the input" in res.output and fake.calls == []


def test_denoise_sigma_scale_default_and_auto(tmp_path, fake):
    image(tmp_path / "n.png")
    res = invoke("denoise", tmp_path / "n.png", "--sigma", "25", "-q", fake=fake)
    assert res.exit_code == 0, res.output
    assert fake.calls == [] and fake.prior.sigmas == [pytest.approx(25 / 255)]  # one denoiser call
    rec = json.loads((tmp_path / "n_restored.json").read_text())
    assert rec["solver"] == "denoiser" and rec["nfe"] == 1 and rec["sigma_y"] == pytest.approx(25 / 255)
    res = invoke("denoise", tmp_path / "n.png", "--sigma", "25", "--solver", "pnp_admm", "--overwrite", "-q", fake=fake)
    assert res.exit_code == 0 and fake.calls[0]["sigma_y"] == pytest.approx(25 / 255)
    assert type(fake.calls[0]["operator"]).__name__ == "Denoising" and fake.calls[0]["opts"] == {"task": None}
    # --sigma auto estimates the noise of a flat grey image with std 20/255.
    noisy = np.clip(128 + 20 * np.random.default_rng(0).standard_normal((64, 64, 3)), 0, 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "flat.png"), noisy)
    assert invoke("denoise", tmp_path / "flat.png", "-q", fake=fake).exit_code == 0
    assert fake.prior.sigmas[-1] == pytest.approx(20 / 255, rel=0.1)
    for bad in ("abc", "300"):
        res = invoke("denoise", tmp_path / "n.png", "--sigma", bad, "--overwrite", fake=fake)
        assert res.exit_code == 1 and "--sigma" in res.output
    res = invoke("sr", tmp_path / "n.png", "--solver", "denoiser", "--overwrite", fake=fake)
    assert res.exit_code == 1 and "only exists for `denoise`" in res.output


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "args, message",
    [
        (["--solver", "nope"], "unknown solver 'nope'; choose one of: ddnm, ddrm, diffpir, dps, pnp_admm"),
        (["--prior", "nope"], "unknown prior 'nope'; choose one of: builtin, other"),
        (["--opt", "eta"], "is not KEY=VALUE"),
        (["--device", "cuda"], "CUDA is not available"),
    ],
)
def test_errors_are_one_line_without_partial_output(tmp_path, fake, args, message):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    image(tmp_path / "p.png", 16, 16)
    res = invoke("sr", tmp_path / "p.png", "--scale", "2", *args, fake=fake)
    assert res.exit_code == 1 and res.output.startswith("Error: ") and message in res.output
    assert len(res.output.strip().splitlines()) == 1 and files(tmp_path) == ["p.png"]


def test_missing_and_unreadable_inputs(tmp_path, fake):
    res = invoke("sr", tmp_path / "nope.png", fake=fake)
    assert res.exit_code == 2 and "does not exist" in res.output
    (tmp_path / "junk.png").write_text("hello")
    res = invoke("sr", tmp_path / "junk.png", fake=fake)
    assert res.exit_code == 1 and "Error:" in res.output and "not an image" in res.output
    assert files(tmp_path) == ["junk.png"]


def test_out_of_memory_and_unexpected_errors(tmp_path, fake):
    image(tmp_path / "p.png", 16, 16)
    fake.error = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
    res = invoke("sr", tmp_path / "p.png", "--scale", "2", fake=fake)
    assert res.exit_code == 1 and "out of memory; try --tile" in res.output and "--batch-size" in res.output
    for err in (RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                             "you tried to allocate 17179869184 bytes. Error code 12 (Cannot allocate memory)"),
                MemoryError()):
        fake.error = err
        res = invoke("sr", tmp_path / "p.png", "--scale", "2", "-q", fake=fake)
        assert res.exit_code == 1 and res.output == f"Error: {group.OOM_ADVICE}\n"
    fake.error = OSError(errno.ENOSPC, "No space left on device", "out.png")
    res = invoke("sr", tmp_path / "p.png", "--scale", "2", "-q", fake=fake)
    assert res.exit_code == 1 and res.output == "Error: out.png: No space left on device; free some disk space or write elsewhere with -o\n"
    fake.error = KeyboardInterrupt()
    res = invoke("sr", tmp_path / "p.png", "--scale", "2", "-q", fake=fake)
    assert res.exit_code == 130 and res.output == "Error: interrupted (Ctrl-C)\n" and files(tmp_path) == ["p.png"]
    fake.error = ZeroDivisionError("boom")
    res = invoke("sr", tmp_path / "p.png", "--scale", "2", fake=fake)
    assert res.exit_code == 1 and "ZeroDivisionError: boom (run again with --debug" in res.output
    assert "Traceback" not in res.output and files(tmp_path) == ["p.png"]
    res = invoke("sr", tmp_path / "p.png", "--scale", "2", "--debug", fake=fake, catch_exceptions=True)
    assert isinstance(res.exception, ZeroDivisionError)


def test_failed_write_is_one_line_and_leaves_nothing(tmp_path, fake, monkeypatch):
    from pnp_restore import io

    image(tmp_path / "p.png", 16, 16)

    def full_disk(**record):
        raise OSError(errno.ENOSPC, "No space left on device", "p_restored.json")

    monkeypatch.setattr(io, "sidecar_bytes", full_disk)
    res = invoke("sr", tmp_path / "p.png", "--scale", "2", "-q", fake=fake)
    assert res.exit_code == 1 and res.output == "Error: p_restored.json: No space left on device; free some disk space or write elsewhere with -o\n"
    assert files(tmp_path) == ["p.png"]


def test_memory_refusal_is_one_line(tmp_path, fake):
    fake.memory = 2**20
    image(tmp_path / "p.png", 64, 64)
    res = invoke("sr", tmp_path / "p.png", "--scale", "2", fake=fake)
    assert res.exit_code == 1 and len(res.output.splitlines()) == 1
    assert "restoring 1 image(s) of 128x128 at once needs about" in res.output and "--tile 256" in res.output
    assert fake.prior_kwargs == {} and files(tmp_path) == ["p.png"]


def test_priors_table(monkeypatch):
    from pnp_restore import priors

    rows = [
        {"name": "builtin", "resolution": None, "data_range": "[0, 1]", "parameterisation": "D", "url": None,
         "installed": True, "description": "ours"},
        {"name": "ffhq-256", "resolution": 256, "data_range": "[-1, 1]", "parameterisation": "eps",
         "url": "https://example.org/ffhq.pt", "installed": False, "description": "faces"},
    ]
    monkeypatch.setattr(priors, "available", lambda: rows, raising=False)
    res = invoke("priors")
    assert res.exit_code == 0
    lines = res.output.splitlines()
    assert lines[0].split() == ["name", "resolution", "range", "parameterisation", "installed", "description"]
    assert lines[1].split() == ["builtin", "any", "[0,", "1]", "D", "yes", "ours"]
    assert lines[2].split() == ["ffhq-256", "256x256", "[-1,", "1]", "eps", "no", "faces"]
    assert "ffhq-256: https://example.org/ffhq.pt" in res.output  # not a registry entry: its url


def test_priors_errors_are_one_line(monkeypatch):
    from pnp_restore import priors

    def broken():
        raise OSError(errno.EACCES, "Permission denied", "/weights")

    monkeypatch.setattr(priors, "available", broken, raising=False)
    res = invoke("priors")
    assert res.exit_code == 1 and res.output == "Error: /weights: Permission denied; check the permissions or choose another path\n"
    res = invoke("priors", "--debug", catch_exceptions=True)
    assert isinstance(res.exception, PermissionError)


# --------------------------------------------------------------------------- options


def test_denoise_sigma_opt_names_its_flag_and_denoiser_refuses_ignored_options(tmp_path, fake):
    image(tmp_path / "p.png", 16, 16)
    res = invoke("denoise", tmp_path / "p.png", "--sigma", "25", "--solver", "pnp_admm", "--opt", "sigma_y=0.2",
                 fake=fake)
    assert res.exit_code == 1 and "use --sigma instead" in res.output
    for args in (["--opt", "eta=1"], ["--steps", "5"]):
        res = invoke("denoise", tmp_path / "p.png", "--sigma", "25", *args, fake=fake)
        assert res.exit_code == 1 and "takes no --steps or --opt" in res.output
    assert fake.prior_kwargs == {} and files(tmp_path) == ["p.png"]


def test_arch_with_the_builtin_prior_is_an_error(tmp_path, fake):
    image(tmp_path / "p.png", 16, 16)
    res = invoke("sr", tmp_path / "p.png", "--arch", "ffhq_10m", fake=fake)
    assert res.exit_code == 1 and "--arch only applies to a checkpoint file" in res.output and fake.prior_kwargs == {}


def test_opts_are_parsed_as_json_validated_and_coerced(tmp_path, fake):
    parsed = {"eta": [1, 2]}  # JSON reaches the validation as JSON: a list, not the string "[1,2]"
    with pytest.raises(ConfigError, match=r"^eta "):
        solver_options(Common(solver="ddrm", opt=("eta=[1,2]",)), "sr")
    assert settings.parse_opts(("eta=[1,2]", "kind=abc"), "sr") == {**parsed, "kind": "abc"}
    assert solver_options(Common(solver="ddrm", opt=("eta=1",)), "sr") == {"eta": 1.0}
    image(tmp_path / "p.png", 16, 16)
    res = invoke("sr", tmp_path / "p.png", "--opt", "eta=1", "-q", fake=fake)
    assert res.exit_code == 0 and fake.calls[0]["opts"]["eta"] == 1.0 and isinstance(fake.calls[0]["opts"]["eta"], float)


@pytest.mark.parametrize("opt", ["eta=abc", "eta=[1,2]", "eta=null", "eta=-5", "eta=NaN", "zeta=big"])
def test_bad_opt_values_with_the_real_validation(tmp_path, fake, opt):
    image(tmp_path / "p.png", 16, 16)
    res = invoke("sr", tmp_path / "p.png", "--opt", opt, fake=fake)
    assert res.exit_code == 1 and res.output.startswith("Error: ") and len(res.output.splitlines()) == 1
    assert opt.partition("=")[0] in res.output and "Traceback" not in res.output and "TypeError" not in res.output
    assert fake.prior_kwargs == {} and files(tmp_path) == ["p.png"]


_NO_SOLVER_OPTION = "is not a solver option"


@pytest.mark.parametrize("args, code, texts", [
    # settings with their own flag are refused through --opt, naming the flag
    (["--opt", "seed=7"], 1, [_NO_SOLVER_OPTION, "--seed"]),
    (["--opt", "sigma_y=0.2"], 1, [_NO_SOLVER_OPTION, "--sigma-y"]),
    (["--opt", "solver=dps"], 1, [_NO_SOLVER_OPTION, "--solver"]),
    (["--opt", "steps=5"], 1, [_NO_SOLVER_OPTION, "--steps"]),
    (["--opt", "task=inpainting"], 1, [_NO_SOLVER_OPTION, "cannot be set from the command line"]),
    # numbers out of range are usage errors of the option parser
    (["--steps", "1e12"], 2, ["Invalid value for '--steps'"]),
    (["--steps", str(2**70)], 2, ["Invalid value for '--steps'"]),
    (["--steps", "100001"], 2, ["Invalid value for '--steps'"]),
    (["--seed", str(2**64)], 2, ["Invalid value for '--seed'"]),
    (["--seed", "-1"], 2, ["Invalid value for '--seed'"]),
    (["--scale", "100"], 2, ["Invalid value for '--scale'"]),
    (["--sigma-y", "nan"], 2, ["Invalid value for '--sigma-y'"]),
    (["--sigma-y", "5"], 2, ["Invalid value for '--sigma-y'"]),
    (["--samples", "100000"], 2, ["Invalid value for '--samples'"]),
    (["--batch-size", "0"], 2, ["Invalid value for '--batch-size'"]),
])
def test_bad_options_fail_before_any_work(tmp_path, fake, args, code, texts):
    image(tmp_path / "p.png", 16, 16)
    res = invoke("sr", tmp_path / "p.png", *args, fake=fake)
    assert res.exit_code == code and all(t in res.output for t in texts) and "Traceback" not in res.output
    assert fake.prior_kwargs == {} and files(tmp_path) == ["p.png"]


def test_negative_motion_kernel_seed_is_a_usage_error(tmp_path, fake):
    image(tmp_path / "p.png", 16, 16)
    res = invoke("deblur", tmp_path / "p.png", "--kernel", "motion:0.5", "--seed", "-3", fake=fake)
    assert res.exit_code == 2 and "Invalid value for '--seed'" in res.output and fake.calls == []


def test_seed_plus_outputs_may_not_overflow(tmp_path, fake):
    image(tmp_path / "p.png", 16, 16)
    res = invoke("sr", tmp_path / "p.png", "--seed", str(settings.MAX_SEED), "--samples", "2", fake=fake)
    assert res.exit_code == 1 and "use a smaller --seed" in res.output and fake.prior_kwargs == {}


# --------------------------------------------------------------------------- one error boundary for all commands


@pytest.fixture
def lazy_command(tmp_path, monkeypatch):
    """A lazy command ``boom KIND`` raising the error KIND, registered like train-prior and bench."""
    (tmp_path / "boom_cmd.py").write_text("""
import errno, click
from pnp_restore.errors import CheckpointError

ERRORS = {
    "project": lambda: CheckpointError("run/checkpoint.pt is truncated; delete it and train again"),
    "missing": lambda: FileNotFoundError(errno.ENOENT, "No such file or directory", "data/x.png"),
    "disk": lambda: OSError(errno.ENOSPC, "No space left on device", "run/log.csv"),
    "denied": lambda: PermissionError(errno.EACCES, "Permission denied", "/root/run"),
    "memory": lambda: MemoryError(),
    "allocator": lambda: RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"),
    "interrupt": lambda: KeyboardInterrupt(),
}

@click.command("boom")
@click.argument("kind")
def boom(kind):
    raise ERRORS[kind]()
""")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(group.Group.lazy, "boom", ("boom_cmd", "boom", "Raise an error."))


@pytest.mark.parametrize("kind, line, code", [
    ("project", "run/checkpoint.pt is truncated; delete it and train again", 1),
    ("missing", "data/x.png: No such file or directory; check the path", 1),
    ("disk", "run/log.csv: No space left on device; free some disk space or write elsewhere with -o", 1),
    ("denied", "/root/run: Permission denied; check the permissions or choose another path", 1),
    ("memory", group.OOM_ADVICE, 1),
    ("allocator", group.OOM_ADVICE, 1),
    ("interrupt", "interrupted (Ctrl-C)", 130),
])
def test_lazy_commands_share_the_error_boundary(lazy_command, kind, line, code):
    res = CliRunner().invoke(main, ["boom", kind])
    assert res.exit_code == code and res.output == f"Error: {line}\n"


def test_debug_keeps_the_traceback_for_lazy_commands(lazy_command):
    res = CliRunner().invoke(main, ["--debug", "boom", "project"])
    assert isinstance(res.exception, PnPRestoreError)


# --------------------------------------------------------------------------- subprocess


def test_subprocess_help_and_errors_have_no_traceback(tmp_path):
    res = python_cli("--help")
    assert res.returncode == 0 and "inpaint" in res.stdout
    image(tmp_path / "p.png", 16, 16)
    mask(tmp_path / "m.png", 8, 8, box=(slice(0, 2), slice(0, 2)))
    res = python_cli("inpaint", tmp_path / "p.png", tmp_path / "m.png")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("Error: m.png is 8x8 but the image is 16x16")
    assert files(tmp_path) == ["m.png", "p.png"]
