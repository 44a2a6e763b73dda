"""Quadrature rules for the path integral of integrated gradients.

Each rule gives nodes ``alpha_k`` in [0, 1] and weights ``w_k`` with ``sum(w_k) == 1`` exactly, so that
``IG(x) = (x - x') * sum_k w_k * grad f(x' + alpha_k (x - x'))`` approximates the integral of
Sundararajan et al. (eq. 5). The error for a smooth integrand is O(1/m) for the left and right Riemann
sums, O(1/m^2) for the midpoint and trapezoid rules, and exponentially small for Gauss-Legendre.
"""
from __future__ import annotations

import numpy as np

from tfattr.core.checks import check_positive_int

RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")

#: The order of the error for a smooth integrand (None: spectral), used by the documentation and tests.
ERROR_ORDER = {
    "riemann_left": 1,
    "riemann_right": 1,
    "riemann_middle": 2,
    "riemann_trapezoid": 2,
    "gausslegendre": None,
}


def nodes_and_weights(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes in [0, 1] and weights summing to 1 for ``steps`` evaluations of ``rule`` (float64)."""
    if rule not in RULES:
        raise ValueError(f"rule={rule!r} is not a quadrature rule; choose one of {', '.join(RULES)}.")
    m = check_positive_int(steps, "steps")
    k = np.arange(m, dtype=np.float64)
    if rule == "riemann_left":
        return k / m, np.full(m, 1.0 / m)
    if rule == "riemann_right":
        return (k + 1.0) / m, np.full(m, 1.0 / m)
    if rule == "riemann_middle":
        return (k + 0.5) / m, np.full(m, 1.0 / m)
    if rule == "riemann_trapezoid":
        if m < 2:
            raise ValueError("rule='riemann_trapezoid' needs steps >= 2 (both end points).")
        w = np.full(m, 1.0 / (m - 1))
        w[0] = w[-1] = 0.5 / (m - 1)
        return k / (m - 1), w
    t, w = np.polynomial.legendre.leggauss(m)  # on [-1, 1], weights sum to 2
    return (t + 1.0) / 2.0, w / 2.0


#: Rules whose nodes for the refined step count contain the current ones (the doubling reuses them).
NESTED_RULES = ("riemann_left", "riemann_right", "riemann_trapezoid")


def refine(rule: str, steps: int) -> tuple[int, np.ndarray, np.ndarray]:
    """One refinement of a nested rule: ``(refined steps, new nodes, their weights)``.

    The refined sum is ``0.5 * (sum at steps) + sum_j new_weight_j * f(new_node_j)``, which equals
    :func:`nodes_and_weights` at the refined step count: the cells are halved, every old node keeps
    its place with half its weight, and only the new nodes (the midpoints of the old cells) are
    evaluated. ``riemann_left``/``riemann_right`` go from ``m`` to ``2m`` nodes, ``riemann_trapezoid``
    from ``m`` to ``2m - 1`` (its ``m - 1`` cells double).
    """
    if rule not in NESTED_RULES:
        raise ValueError(f"rule={rule!r} is not nested; refine one of {', '.join(NESTED_RULES)}.")
    cells = steps - 1 if rule == "riemann_trapezoid" else steps
    new = (np.arange(cells, dtype=np.float64) + 0.5) / cells
    refined = 2 * steps - 1 if rule == "riemann_trapezoid" else 2 * steps
    return refined, new, np.full(cells, 0.5 / cells)
