"""Per-sample random streams.

``seed=s`` means image ``i`` of a batch draws all its noise from a generator
seeded with ``s + i``. A batch of N therefore gives, image for image, the same
result as N single runs with seeds s, s+1, ... . Noise is drawn on the CPU and
moved to the target device, so a seed gives the same numbers on every device.
"""

from __future__ import annotations

import torch


class SampleRNG:
    """Independent Gaussian/uniform streams, one per batch element.

    Args:
        seed: base seed, or ``None`` for fresh non-deterministic streams.
        batch: number of samples B.
    """

    def __init__(self, seed: int | None, batch: int) -> None:
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self.seed = int(seed)
        self.generators = [torch.Generator().manual_seed(self.seed + i) for i in range(batch)]

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape: tuple[int, ...], device=None, dtype=torch.float32) -> torch.Tensor:
        """Standard normal tensor of ``shape`` whose first dim is the batch."""
        if shape[0] != len(self.generators):
            raise ValueError(f"asked for batch {shape[0]} from a SampleRNG of batch {len(self.generators)}")
        draws = [torch.randn(tuple(shape[1:]), generator=g, dtype=torch.float64) for g in self.generators]
        return torch.stack(draws).to(device=device, dtype=dtype)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return self.randn(tuple(x.shape), device=x.device, dtype=x.dtype)

    def rand(self, shape: tuple[int, ...], device=None, dtype=torch.float32) -> torch.Tensor:
        """Uniform [0, 1) tensor of ``shape`` whose first dim is the batch."""
        draws = [torch.rand(tuple(shape[1:]), generator=g, dtype=torch.float64) for g in self.generators]
        return torch.stack(draws).to(device=device, dtype=dtype)
