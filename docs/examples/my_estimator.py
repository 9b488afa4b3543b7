"""Your own scikit-learn estimator as the audit's target model (``arch: sklearn``).

In the config::

    experiments:
      gam:
        dataset: my_cohort
        model:
          arch: sklearn
          factory: docs/examples/my_estimator.py:make_estimator   # path relative to where snakemake runs
          kwargs: {knots: 5, C: 1.0}

The workflow calls ``make_estimator(**kwargs)`` once per target model, sets every
``random_state`` to the model's own seed and every ``n_jobs`` to 1, fits it on the model's
member records (the standardised features of inputs.zarr) and takes φ from
``decision_function`` (here the logistic regression's log-odds). The fitted models are stored
with skops; only scikit-learn, NumPy and SciPy types and this file's own are trusted when they
are read back.
"""

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import SplineTransformer


def make_estimator(knots: int = 5, C: float = 1.0):
    """An additive model: a cubic spline basis per feature, then an L2-penalised logistic regression."""
    return make_pipeline(SplineTransformer(n_knots=knots, degree=3), LogisticRegression(C=C, max_iter=2000))
