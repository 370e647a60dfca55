"""``pnp-restore bench tune`` and the tuned defaults it writes (pnp_restore.tuned)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pnp_restore import restore, tuned
from pnp_restore.benchmarks import tune as tuning
from pnp_restore.errors import ConfigError, CheckpointError
from pnp_restore.operators import Inpainting, random_mask
from pnp_restore.priors.gaussian import GaussianPrior, squared_exponential_cov

SIZE = 16


def smooth_folder(root: Path, n: int = 2) -> Path:
    """``n`` smooth RGB PNGs (a training folder)."""
    folder = root / "train" / "toy"
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    for i in range(n):
        img = np.stack([0.5 + 0.3 * np.sin(3 * xx + i), 0.5 + 0.3 * np.cos(2 * yy - i), 0.4 + 0.2 * xx * yy], -1)
        Image.fromarray((img * 255).round().astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def gaussian_prior() -> GaussianPrior:
    shape = (3, SIZE, SIZE)
    return GaussianPrior(torch.full(shape, 0.5, dtype=torch.float64),
                         squared_exponential_cov(shape, std=0.2, length_scale=3.0, nugget=0.01))


def run_study(folder: Path, storage: Path, trials: int):
    return tuning.tune("ddnm", "random_inpaint_70@0.02", folder, prior=gaussian_prior(), storage=storage, trials=trials,
                       steps=3, images=2, size=SIZE, progress=False)


def test_a_study_resumes_and_keeps_its_trials(tmp_path):
    """Stopping after 2 trials and asking for 4 runs 2 more in the same study (SQLite); the stored trials are
    unchanged, and the best trial's score is the evaluation of its own settings."""
    folder, storage = smooth_folder(tmp_path), tmp_path / "study.db"
    first = run_study(folder, storage, 2)
    values = [t.value for t in first.trials]
    study = run_study(folder, storage, 4)
    assert len(study.trials) == 4 and [t.value for t in study.trials[:2]] == values
    best = study.best_trial
    imgs = tuning._datasets.load(folder, SIZE, "center", 2)
    again = tuning.evaluate(imgs, tuning._protocols.expand("random_inpaint_70@0.02", size=SIZE), gaussian_prior(), "ddnm",
                            3, best.user_attrs["options"], best.user_attrs["schedule"])
    assert again["psnr"] == pytest.approx(best.value, abs=1e-9)


def test_test_folders_are_refused(tmp_path):
    folder = tmp_path / "data" / "test" / "Set5"
    folder.mkdir(parents=True)
    with pytest.raises(ConfigError, match="is a test set; tune on training or validation images only"):
        tuning.tune("ddrm", "denoise@0.1", folder, storage=tmp_path / "s.db", trials=1)


def test_unknown_solver_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="no search space for solver 'nope'"):
        tuning.tune("nope", "denoise@0.1", smooth_folder(tmp_path), storage=tmp_path / "s.db", trials=1)


def test_written_entry_drives_restore_with_tuned_defaults(tmp_path):
    """--write stores the best trial; restore(..., defaults="tuned") then uses its steps, options and schedule
    (the same result as passing them by hand), and defaults="paper" ignores it."""
    folder, storage = smooth_folder(tmp_path), tmp_path / "study.db"
    study = run_study(folder, storage, 2)
    table = tuning.write_entry(tmp_path / "tuned.json", "inpainting", "ddnm", tuning.best_entry(study, "cmd"))
    prior = gaussian_prior()
    prior.tuned = tuned.read_table(table.parent)
    found = prior.tuned["entries"]["inpainting"]["ddnm"]
    assert found["steps"] == 3 and found["command"] == "cmd" and set(found["schedule"]) == {"kind", "sigma_max", "sigma_min", "rho"}
    op = Inpainting(random_mask(SIZE, 0.7, seed=0))
    y = op(torch.rand(1, 3, SIZE, SIZE, dtype=torch.float64))
    x, info = restore(y, op, prior, "ddnm", task="inpainting", defaults="tuned", seed=0, return_info=True)
    assert info["defaults"] == "tuned" and info["steps"] == 3 and info["schedule"] == found["schedule"]
    by_hand = restore(y, op, prior, "ddnm", seed=0, steps=3, sigmas=tuned.schedule_sigmas(found["schedule"], 3),
                      **found["options"])
    assert torch.equal(x, by_hand)
    _, paper = restore(y, op, prior, "ddnm", task="inpainting", seed=0, return_info=True)
    assert paper["defaults"] == "paper" and paper["steps"] == 100
    _, other = restore(y, op, prior, "ddnm", task="inpainting", defaults="tuned", seed=0, steps=5, return_info=True)
    assert other["steps"] == 5 and other["defaults"] == "tuned"  # explicit steps win; the schedule is re-ramped


def test_bad_tables_and_defaults_are_one_line(tmp_path):
    (tmp_path / "tuned.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="tuned.json is not valid JSON"):
        tuned.read_table(tmp_path)
    (tmp_path / "tuned.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(CheckpointError, match="has no 'entries' object"):
        tuned.read_table(tmp_path)
    assert tuned.read_table(tmp_path / "none") == {}
    op = Inpainting(random_mask(SIZE, 0.5, seed=0))
    with pytest.raises(ConfigError, match="defaults must be one of paper, tuned; got 'best'"):
        restore(op(torch.rand(1, 3, SIZE, SIZE)), op, gaussian_prior(), "ddnm", defaults="best")


def test_schedule_is_a_karras_ramp():
    s = tuned.schedule_sigmas({"sigma_max": 10.0, "sigma_min": 0.01, "rho": 1.0}, 4)
    assert s == pytest.approx([10.0, 10 - 9.99 / 3, 10 - 2 * 9.99 / 3, 0.01])


def test_cli_tunes_and_writes_the_table(tmp_path):
    """The command runs the study with the built-in prior and stores the entry under the task of --tasks."""
    from click.testing import CliRunner

    from pnp_restore.cli import main

    folder = smooth_folder(tmp_path)
    args = ["bench", "tune", "--solver", "ddrm", "--tasks", "random_inpaint_70@0.02", "--data", str(folder),
            "--storage", str(tmp_path / "s.db"), "--trials", "1", "--steps", "2", "--images", "1", "--size", str(SIZE),
            "--write", str(tmp_path / "tuned.json"), "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    entry = tuned.read_table(tmp_path)["entries"]["inpainting"]["ddrm"]
    assert entry["steps"] == 2 and entry["trials"] == 1 and entry["command"].startswith("pnp-restore bench tune")
    mixed = CliRunner().invoke(main, [*args[:5], "random_inpaint_70@0.02,denoise@0.1", *args[6:]])
    assert mixed.exit_code != 0 and "--tasks mixes several tasks" in mixed.output
