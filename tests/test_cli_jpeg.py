"""``pnp-restore jpeg``: each file's own codec as the forward model, through the real pipeline."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from PIL import Image

from pnp_restore.cli import main
from pnp_restore.operators.grayscale import GrayscaleNonlinear
from pnp_restore.operators.jpeg import JPEG

from cli_fakes import Fake


def write_jpeg(path, quality: int, gray: bool = False, size: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.5 + 0.4 * np.sin(6 * xx), 0.5 + 0.4 * np.cos(5 * yy), 0.3 + 0.4 * xx * yy], -1)
    img = np.clip(img + 0.05 * rng.standard_normal(img.shape), 0, 1)
    arr = (img * 255).round().astype(np.uint8)
    pil = Image.fromarray(arr.mean(-1).round().astype(np.uint8) if gray else arr)
    pil.save(path, quality=quality)
    return arr


def test_each_file_gets_its_own_tables_and_the_default_solver(tmp_path):
    """Two files of the same size but different qualities: one operator each (not shared by size),
    built from the file's tables; the default solver is ΠGDM on the JPEG task; a gray JPEG becomes a
    gray measurement of the RGB prior's image."""
    fake = Fake()
    write_jpeg(tmp_path / "a.jpg", 10)
    write_jpeg(tmp_path / "b.jpg", 60, seed=1)
    write_jpeg(tmp_path / "g.jpg", 30, gray=True)
    res = CliRunner().invoke(main, ["jpeg", str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"), str(tmp_path / "g.jpg"),
                                    "-o", str(tmp_path / "out") + "/", "-q"], obj=fake.backend)
    assert res.exit_code == 0, res.output
    ops = [c["operator"] for c in fake.calls]
    assert len(ops) == 3 and isinstance(ops[0], JPEG) and isinstance(ops[1], JPEG)
    assert not np.array_equal(ops[0].luma_table.numpy(), ops[1].luma_table.numpy())
    assert isinstance(ops[2], GrayscaleNonlinear) and isinstance(ops[2].inner, JPEG)
    assert {c["solver"] for c in fake.calls} == {"pigdm"} and fake.calls[0]["opts"] == {"task": "jpeg"}
    assert fake.calls[0]["sigma_y"] == 0.005
    rec = json.loads((tmp_path / "out" / "a.json").read_text())
    assert rec["task"] == "jpeg" and rec["solver"] == "pigdm"


def test_real_run_restores_and_linear_solvers_refuse(tmp_path):
    """The real stack (built-in prior, 3 ΠGDM steps) writes a restored image; a solver that needs a linear
    operator is one line naming those that do not."""
    write_jpeg(tmp_path / "p.jpg", 10)
    res = CliRunner().invoke(main, ["jpeg", str(tmp_path / "p.jpg"), "--steps", "3", "-q"])
    assert res.exit_code == 0, res.output
    out = np.asarray(Image.open(tmp_path / "p_restored.png"))
    assert out.shape == (32, 32, 3)
    bad = CliRunner().invoke(main, ["jpeg", str(tmp_path / "p.jpg"), "--solver", "ddrm", "--steps", "2", "-q",
                                    "-o", str(tmp_path / "x.png")])
    assert bad.exit_code == 1 and bad.output.count("\n") == 1
    assert "ddrm needs a linear operator and JPEG is nonlinear; use one of dps, daps, pigdm, reddiff, pnpdm" in bad.output


def test_a_png_is_refused_in_one_line(tmp_path):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "x.png")
    res = CliRunner().invoke(main, ["jpeg", str(tmp_path / "x.png"), "-q"])
    assert res.exit_code == 1 and "is a PNG file, not a JPEG" in res.output and res.output.count("\n") == 1
