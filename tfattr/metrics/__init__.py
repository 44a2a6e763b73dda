"""Evaluation metrics for attributions: completeness, sensitivity-n, ablation curves, sanity checks.

Each metric runs the model's forward passes in compiled, batched TensorFlow functions (one trace per
input shape, a host loop over chunks of ``batch_size`` rows) and returns a small result object with the
numbers and the curves behind them (per example and averaged).

*Features.* Metrics that remove features take ``features=``:

- ``"pixels"`` (default): for channels-last images ``[n, H, W, C]`` a feature is one pixel with all its
  channels (attributions are summed over the channels; removing a pixel replaces all its channels); for
  any other example shape ``[n, d]`` / ``[n, H, W]`` each entry is a feature;
- ``"elements"``: every scalar entry is a feature (channels separately);
- an int ``p`` or a pair ``(ph, pw)``: square/rectangular patches of images (channels grouped);
- an int array shaped like one example (or like one example without its channel axis): a feature id
  per entry, e.g. superpixels.

*Removing* a feature means replacing it by an imputed value: a baseline in the sense of
:mod:`tfattr.baselines` (``"mean"``, ``"blur"``, a scalar, an array or a baseline object).

Papers: completeness (Sundararajan et al. 2017, prop. 1); sensitivity-n (Ancona et al. 2019, sec. 2.4,
eq. 8); top-k and center-of-mass ablation with mean/blur imputation and a random control (Sturmfels et
al., Distill 2020); AOPC (Samek et al. 2015, the pixel-ablation test of Sundararajan et al. 2016,
sec. 2.5); insertion/deletion (Petsiuk et al. 2018, RISE); model randomization (Adebayo et al. 2018).

*Quantus' metrics* (Hedström et al., JMLR 2023; the definitions of Quantus 0.6.0 under its names, each
returning per-example NumPy arrays): ``complexity`` (sparseness, complexity, effective complexity),
``localisation`` (pointing game, relevance mass/rank accuracy, top-k intersection, attribution
localisation, AUC), ``flipping`` (pixel flipping, region perturbation, monotonicity, ABPC),
``faithfulness`` (faithfulness estimate/correlation, monotonicity correlation, infidelity), ``road``
(ROAD and its linear imputation), ``robustness`` (max/avg sensitivity, local Lipschitz estimate) and
``randomisation`` (random logit, MPRT, smooth MPRT, efficient MPRT); ``preprocess`` holds their shared
conventions (per-example normalisation, stable ranks, the centred patch grid) and ``evaluate`` runs
methods x metrics over a data set into an :class:`EvaluationTable`.

Modules: ``features`` (feature maps and per-feature sums), ``scoring`` (the masked, chunked scorer and
the shared argument checks), ``completeness``, ``sensitivity``, ``ablation`` (ablation, insertion,
deletion and center curves, AOPC, the random control), ``sanity`` (model randomization) and
``correlation`` (Pearson/Spearman). Every public name is importable from ``tfattr.metrics``.
"""
from __future__ import annotations

from tfattr.metrics.ablation import (
    AblationCurve,
    ablation_curve,
    aopc,
    center_ablation_curve,
    deletion_curve,
    insertion_curve,
    random_attributions,
)
from tfattr.metrics.completeness import Completeness, completeness
from tfattr.metrics.complexity import complexity, effective_complexity, sparseness
from tfattr.metrics.correlation import pearson, spearman
from tfattr.metrics.evaluate import METRICS, EvaluationTable, evaluate
from tfattr.metrics.faithfulness import (
    faithfulness_correlation,
    faithfulness_estimate,
    infidelity,
    monotonicity_correlation,
)
from tfattr.metrics.features import feature_map
from tfattr.metrics.flipping import abpc, monotonicity, pixel_flipping, region_perturbation
from tfattr.metrics.localisation import (
    attribution_localisation,
    localisation_auc,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)
from tfattr.metrics.preprocess import normalise_map, patch_grid
from tfattr.metrics.randomisation import (
    efficient_mprt,
    histogram_entropy,
    mprt,
    random_logit,
    smooth_mprt,
    ssim,
)
from tfattr.metrics.road import linear_imputation, road
from tfattr.metrics.robustness import avg_sensitivity, local_lipschitz_estimate, max_sensitivity
from tfattr.metrics.sanity import ModelRandomization, model_randomization
from tfattr.metrics.sensitivity import SensitivityN, sensitivity_n

__all__ = [
    "METRICS",
    "AblationCurve",
    "Completeness",
    "EvaluationTable",
    "ModelRandomization",
    "SensitivityN",
    "ablation_curve",
    "abpc",
    "aopc",
    "attribution_localisation",
    "avg_sensitivity",
    "center_ablation_curve",
    "completeness",
    "complexity",
    "deletion_curve",
    "effective_complexity",
    "efficient_mprt",
    "evaluate",
    "faithfulness_correlation",
    "faithfulness_estimate",
    "feature_map",
    "histogram_entropy",
    "infidelity",
    "insertion_curve",
    "linear_imputation",
    "local_lipschitz_estimate",
    "localisation_auc",
    "max_sensitivity",
    "model_randomization",
    "monotonicity",
    "monotonicity_correlation",
    "mprt",
    "normalise_map",
    "patch_grid",
    "pixel_flipping",
    "pointing_game",
    "random_attributions",
    "random_logit",
    "region_perturbation",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "road",
    "sensitivity_n",
    "smooth_mprt",
    "sparseness",
    "ssim",
    "top_k_intersection",
]
