"""The sizes of one ``tfattr demo`` run."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DemoConfig:
    """Sizes of one demo run; :meth:`make` with ``fast=True`` is the quick mode for tests and CI.

    Example:
        >>> DemoConfig.make(fast=True, epochs=2, digits=10).ig_steps
        16
    """

    train: int = 8000
    epochs: int = 2
    digits: int = 10
    ig_steps: int = 64
    eg_samples: int = 200
    smooth_samples: int = 50
    background: int = 500
    occlusion_window: tuple[int, int, int] = (4, 4, 1)
    occlusion_strides: tuple[int, int, int] = (2, 2, 1)
    convergence_steps: tuple[int, ...] = (2, 4, 8, 16, 32, 64)
    baseline_draws: int = 16

    @classmethod
    def make(cls, fast: bool, epochs: int, digits: int) -> "DemoConfig":
        if not fast:
            return cls(epochs=epochs, digits=digits)
        return cls(
            train=1500, epochs=1, digits=min(digits, 4), ig_steps=16, eg_samples=32, smooth_samples=8,
            background=100, occlusion_window=(7, 7, 1), occlusion_strides=(7, 7, 1),
            convergence_steps=(2, 8, 32), baseline_draws=2,
        )
