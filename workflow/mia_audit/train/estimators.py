"""Target models fitted by their own library: scikit-learn, XGBoost, LightGBM and a user's
scikit-learn-compatible estimator (the ``estimator`` families of :mod:`mia_audit.train.families`).

**Fitting.** Each target model m is one estimator, made with the experiment's ``model.params``
(or by the factory) and the model's own seed (:func:`mia_audit.train.ensemble.model_seed`
reduced to 31 bits) as its ``random_state``, fitted on its member records
(:func:`fit_models`). The models of a shard are fitted in parallel by joblib's worker threads,
one model per thread and one thread per model (``n_jobs=1`` for XGBoost and LightGBM, the OpenMP
and BLAS pools limited to 1 thread by threadpoolctl): XGBoost, LightGBM and scikit-learn's tree
and boosting code run without Python's global lock for most of a fit, and threads share the
inputs and the imported libraries (worker processes would each import them again). Each worker
fits one model, computes its logits on every record while the model is in memory, and
serialises it (nothing is pickled).

**Logits** (:meth:`Estimator.logits`, (records, classes) float64), from which φ is computed as
for every family (:func:`mia_audit.query.membership_signal.logit_confidence`): a binary model's
single score s becomes the logits (0, s), so that φ = ±s.

* XGBoost and LightGBM: the raw margin (``predict_type="margin"``, ``raw_score=True``): the
  log-odds (binary) or the per-class scores whose softmax is ``predict_proba`` (multiclass),
  never a probability rounded to 0 or 1, so no record saturates;
* ``hist_gradient_boosting``, ``logistic_regression``: ``decision_function`` (the same raw
  scores: softmax of them is ``predict_proba``);
* ``random_forest``, which has no margin: the empirical logit of the trees' votes (Cox 1970,
  Haldane 1956): with T trees and ``predict_proba`` p (the mean over trees of each tree's leaf
  class shares; with fully grown trees, the share of votes), logit_c = log(T·p_c + ½), i.e. half a
  vote added to each class, so that φ = log((k_y + ½) / (T − k_y + ½)) for k_y votes for the true
  class of a binary task: finite, at most log(2T + 1);
* ``sklearn`` (a factory): ``decision_function`` where the estimator has one, else
  log ``predict_proba`` (clipped at 1e-15: such a model can saturate). Its metrics come from
  ``predict_proba``.

The target models' metrics (loss, accuracy, AUC) use softmax(logits), which equals
``predict_proba`` for every built-in family but the random forest (whose corrected
probabilities (T·p_c + ½)/(T + C/2) keep the loss finite).

**Storage** (no pickle, :meth:`Estimator.dump` / :meth:`Estimator.load`): XGBoost's JSON model
(``Booster.save_raw("json")``), LightGBM's text model (``Booster.model_to_string``),
scikit-learn estimators with skops (``skops.io.dumps``), read back with an explicit list of
trusted types: each built-in family's own, and for a factory only scikit-learn, NumPy and SciPy
types and those of the factory's own module (:meth:`SklearnFactoryFamily.trusted`); anything
else is refused. The shard's file holds each model's bytes (:mod:`mia_audit.train.weights`).

This module does not import PyTorch: the worker processes stay light.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mia_audit.errors import ConfigError, DataError

#: constructor arguments the workflow sets itself (the model's seed, one thread per model)
MANAGED = frozenset({"random_state", "n_jobs", "seed", "nthread", "n_threads", "num_threads", "verbose"})


def seed31(seed: int) -> int:
    """A model seed reduced to [0, 2**31 − 1], the range every library accepts as ``random_state``."""
    return int(seed) % (2**31 - 1)


def binary_or_multiclass(raw: np.ndarray, n_classes: int) -> np.ndarray:
    """(records, classes) float64 logits from a model's raw scores: (records,) → (0, s); (records, C) as is."""
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw[:, 0]
    if raw.ndim == 1:
        if n_classes != 2:
            raise ValueError(f"a single score per record for {n_classes} classes")
        return np.stack([np.zeros_like(raw), raw], axis=1)
    if raw.shape[1] != n_classes:
        raise ValueError(f"scores for {raw.shape[1]} classes, expected {n_classes}")
    return raw


class Estimator:
    """How the workflow makes, scores and stores one estimator family's models.

    Subclasses set ``library`` (the module whose version the shard records) and ``storage``
    (how a model is stored) and implement :meth:`estimator_class` (or :meth:`new`),
    :meth:`logits`, and for another storage :meth:`dump` and :meth:`load`.
    """

    library = "sklearn"
    storage = "skops"

    def allowed(self, spec: dict) -> set[str]:
        """The ``model.params`` names the family accepts: the estimator's constructor arguments."""
        return set(self.estimator_class()().get_params()) - MANAGED

    def estimator_class(self):
        raise NotImplementedError

    def check(self, spec: dict, key: str) -> None:
        """``model.params`` names only constructor arguments (not those the workflow sets), and
        scikit-learn accepts their values; a ConfigError naming the key otherwise."""
        params = dict(spec.get("params") or {})
        managed = sorted(set(params) & MANAGED)
        if managed:
            raise ConfigError(
                f"config key {key}.params sets {managed}, which the workflow sets itself (each model's seed "
                "from the experiment's seed, one thread per model); remove them"
            )
        allowed = self.allowed(spec)
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise ConfigError(
                f"config key {key}.params has unknown parameter(s) {unknown} for "
                f"{self.estimator_class().__name__}; known: {sorted(allowed)}"
            )
        est = self.new(spec, 0)
        validate = getattr(est, "_validate_params", None)  # scikit-learn's own check of the values
        if callable(validate) and hasattr(est, "_parameter_constraints"):
            try:
                validate()
            except (TypeError, ValueError) as e:
                raise ConfigError(f"config key {key}.params: {' '.join(str(e).split())}") from None

    def new(self, spec: dict, seed: int):
        """One unfitted model with the family's settings and ``seed``."""
        return self.estimator_class()(**dict(spec.get("params") or {}), random_state=seed31(seed))

    def fitted(self, est):
        """What is scored and stored of a fitted estimator (the estimator itself, or its booster)."""
        return est

    def logits(self, model, X: np.ndarray, n_classes: int) -> np.ndarray:
        raise NotImplementedError

    def metric_logits(self, model, X: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """Logits whose softmax gives the probabilities the metrics use (the logits themselves)."""
        return logits

    def dump(self, model) -> bytes:
        import skops.io as sio

        return sio.dumps(model, compression=zipfile.ZIP_DEFLATED)

    #: skops types (besides skops' own defaults) a stored model of this family may hold
    trusted_types: tuple[str, ...] = ()

    def trusted(self, spec: dict, data: bytes) -> list[str]:
        """The types to trust when reading ``data`` back: the family's explicit list."""
        return list(self.trusted_types)

    def load(self, data: bytes, spec: dict):
        import skops.io as sio

        untrusted = sio.get_untrusted_types(data=data)
        allowed = set(self.trusted(spec, data))
        refused = sorted(set(untrusted) - allowed)
        if refused:
            raise DataError(
                f"a stored {spec['arch']} model holds types this family does not trust: {refused} "
                "(a file not written by this workflow?); retrain its shard"
            )
        return sio.loads(data, trusted=sorted(allowed & set(untrusted)))


class DecisionFunctionFamily(Estimator):
    """A scikit-learn classifier whose ``decision_function`` gives its raw scores (logits)."""

    def logits(self, model, X, n_classes):
        return binary_or_multiclass(model.decision_function(X), n_classes)


class LogisticRegressionFamily(DecisionFunctionFamily):
    """scikit-learn ``LogisticRegression`` on the standardised features; logits = ``decision_function``."""

    def estimator_class(self):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression


class HistGradientBoostingFamily(DecisionFunctionFamily):
    """scikit-learn ``HistGradientBoostingClassifier``; logits = ``decision_function`` (raw scores)."""

    trusted_types = ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",)

    def estimator_class(self):
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier


class RandomForestFamily(Estimator):
    """scikit-learn ``RandomForestClassifier``; logits = the empirical logit of the votes."""

    trusted_types = ("sklearn.tree._tree.Tree",)

    def estimator_class(self):
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier

    def logits(self, model, X, n_classes):
        return vote_logits(model.predict_proba(X), len(model.estimators_))


def vote_logits(proba: np.ndarray, trees: int) -> np.ndarray:
    """log(T·p_c + ½): the empirical logit of T trees' votes (module docstring)."""
    return np.log(int(trees) * np.asarray(proba, dtype=np.float64) + 0.5)


class XGBoostFamily(Estimator):
    """``xgboost.XGBClassifier``; logits = the booster's raw margin; stored as XGBoost JSON."""

    library = "xgboost"
    storage = "xgboost-json"

    def estimator_class(self):
        from xgboost import XGBClassifier

        return XGBClassifier

    def new(self, spec, seed):
        return self.estimator_class()(**dict(spec.get("params") or {}), n_jobs=1, random_state=seed31(seed))

    def fitted(self, est):
        return est.get_booster()

    def logits(self, model, X, n_classes):
        return binary_or_multiclass(model.inplace_predict(X, predict_type="margin"), n_classes)

    def dump(self, model) -> bytes:
        return bytes(model.save_raw("json"))

    def load(self, data, spec):
        from xgboost import Booster

        booster = Booster()
        booster.load_model(bytearray(data))
        booster.set_param({"nthread": 1})
        return booster


class LightGBMFamily(Estimator):
    """``lightgbm.LGBMClassifier``; logits = the booster's raw score; stored as LightGBM's text model."""

    library = "lightgbm"
    storage = "lightgbm-text"

    def estimator_class(self):
        from lightgbm import LGBMClassifier

        return LGBMClassifier

    def new(self, spec, seed):
        return self.estimator_class()(**dict(spec.get("params") or {}), n_jobs=1, random_state=seed31(seed), verbose=-1)

    def fitted(self, est):
        return est.booster_

    def logits(self, model, X, n_classes):
        return binary_or_multiclass(model.predict(X, raw_score=True, num_threads=1), n_classes)

    def dump(self, model) -> bytes:
        return model.model_to_string().encode()

    def load(self, data, spec):
        from lightgbm import Booster

        return Booster(model_str=data.decode())


class SklearnFactoryFamily(Estimator):
    """A user's estimator: ``factory(**kwargs)`` returns an unfitted scikit-learn-compatible
    classifier (``fit``, ``predict_proba``; ``decision_function`` where it has one)."""

    #: top-level packages whose types a stored factory model may hold, besides its own module's
    TRUSTED_PACKAGES = ("sklearn", "numpy", "scipy")

    def factory(self, spec: dict, key: str = "model.factory"):
        from mia_audit.train import factories

        fn = factories.resolve(spec["factory"], key)
        factories.check_signature(fn, (), dict(spec.get("kwargs") or {}), key, spec["factory"])
        return fn

    def check(self, spec: dict, key: str) -> None:
        """The factory imports, takes ``model.kwargs`` and returns a classifier with ``fit`` and
        ``predict_proba`` that skops can store."""
        fn = self.factory(spec, f"{key}.factory")
        est = fn(**dict(spec.get("kwargs") or {}))
        lacking = [m for m in ("fit", "predict_proba", "get_params") if not callable(getattr(est, m, None))]
        if lacking:
            raise ConfigError(
                f"config key {key}.factory: {spec['factory']} returned a {type(est).__module__}."
                f"{type(est).__name__} without {lacking}; it must return an unfitted scikit-learn-compatible "
                "classifier (fit, predict_proba; decision_function where it has one)"
            )

    def new(self, spec, seed):
        est = self.factory(spec)(**dict(spec.get("kwargs") or {}))
        names = est.get_params(deep=True)
        own = {n: seed31(seed) for n in names if n == "random_state" or n.endswith("__random_state")}
        own.update({n: 1 for n, v in names.items() if (n == "n_jobs" or n.endswith("__n_jobs")) and v not in (None, 1)})
        return est.set_params(**own) if own else est

    def logits(self, model, X, n_classes):
        if callable(getattr(model, "decision_function", None)):
            return binary_or_multiclass(model.decision_function(X), n_classes)
        return self.metric_logits(model, X, None)

    def metric_logits(self, model, X, logits):
        return np.log(np.clip(np.asarray(model.predict_proba(X), dtype=np.float64), 1e-15, 1.0))

    def trusted(self, spec, data):
        """skops' untrusted types of ``data`` that belong to scikit-learn, NumPy, SciPy or the
        factory's own module."""
        import skops.io as sio

        from mia_audit.train import factories

        where, _ = factories.split(spec["factory"], "model.factory")
        own = factories.module_name(where) if where.endswith(".py") else where
        self.factory(spec)  # imports the module, so that its classes can be found
        return [
            t
            for t in sio.get_untrusted_types(data=data)
            if t.split(".")[0] in self.TRUSTED_PACKAGES or t == own or t.startswith(own + ".")
        ]


@dataclass
class Fitted:
    """One fitted target model: its stored bytes (empty when not kept), its logits and metric
    logits on every record, and the seconds spent fitting, predicting and serialising."""

    data: bytes
    logits: np.ndarray
    metric_logits: np.ndarray
    fit_seconds: float
    predict_seconds: float
    dump_seconds: float


def _fit_one(adapter: Estimator, spec: dict, X, y, rows: np.ndarray, seed: int, n_classes: int, keep: bool) -> Fitted:
    from threadpoolctl import threadpool_limits

    # OpenMP's thread count is a per-thread setting: each worker thread limits its own
    with threadpool_limits(1):
        t0 = time.perf_counter()
        est = adapter.new(spec, seed)
        est.fit(X[rows], y[rows])
        model = adapter.fitted(est)
        t1 = time.perf_counter()
        logits = adapter.logits(model, X, n_classes)
        metric = adapter.metric_logits(model, X, logits)
        t2 = time.perf_counter()
        data = adapter.dump(model) if keep else b""
        t3 = time.perf_counter()
    return Fitted(data, logits, metric, t1 - t0, t2 - t1, t3 - t2)


def check_classes(y: np.ndarray, member_rows: list[np.ndarray], n_classes: int, models: list[int], label_names):
    """Every model's training records hold every class (an estimator fitted without a class has no
    score for it); a DataError naming the first model and class otherwise."""
    for m, rows in zip(models, member_rows, strict=True):
        present = np.unique(y[rows])
        if len(present) < n_classes:
            missing = [label_names[c] for c in range(n_classes) if c not in set(present.tolist())]
            raise DataError(
                f"target model {m}'s training records hold no record of class(es) {missing}; estimator "
                "families need every class in every model's training set (merge rare classes into others)"
            )


def fit_models(
    spec: dict,
    X: np.ndarray,
    y: np.ndarray,
    member_rows: list[np.ndarray],
    seeds: list[int],
    n_classes: int,
    threads: int,
    keep: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[Fitted]:
    """Fit one model per ``member_rows[m]`` with ``seeds[m]``, ``threads`` at a time (module
    docstring); each model's logits on every row of ``X``, and its bytes when ``keep``."""
    from joblib import Parallel, delayed
    from threadpoolctl import threadpool_limits

    from mia_audit.train.families import estimator_adapter

    adapter = estimator_adapter(spec)
    adapter.new(spec, 0)  # imports the library (and a factory's module) once, before the threads start
    if keep and adapter.storage == "skops":
        import skops.io  # noqa: F401
    n_jobs = max(1, min(int(threads), len(member_rows)))
    X = np.ascontiguousarray(X)
    y = np.asarray(y, dtype=np.int64)
    tasks = (
        delayed(_fit_one)(adapter, spec, X, y, rows, seed, n_classes, keep)
        for rows, seed in zip(member_rows, seeds, strict=True)
    )
    with threadpool_limits(1):
        out = Parallel(n_jobs=n_jobs, backend="threading" if n_jobs > 1 else "sequential")(tasks)
    if log:
        log(
            f"fitted {len(out)} {spec['arch']} models in {n_jobs} thread(s), one model per thread: "
            f"fit {sum(f.fit_seconds for f in out):.1f} s, predict {sum(f.predict_seconds for f in out):.1f} s, "
            f"serialise {sum(f.dump_seconds for f in out):.1f} s (summed over models)"
        )
    return out


def library_version(adapter: Estimator) -> str:
    import importlib.metadata as md

    dist = {"sklearn": "scikit-learn", "xgboost": "xgboost-cpu"}.get(adapter.library, adapter.library)
    try:
        return f"{dist} {md.version(dist)}"
    except md.PackageNotFoundError:
        import importlib

        return f"{adapter.library} {importlib.import_module(adapter.library).__version__}"
