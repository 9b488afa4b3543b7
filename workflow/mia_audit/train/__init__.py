"""Stage 3, train: the target models.

Model families (:mod:`.families`, a registry; the networks in :mod:`.vision` and :mod:`.ecg`),
vectorised ensembles (:mod:`.ensemble`, :mod:`.augment`), one shard of models (:mod:`.shard`,
:mod:`.weights`), DP-SGD (:mod:`.dp_sgd`, :mod:`.dp_gradients`, :mod:`.accounting`), model
selection (:mod:`.selection`), baselines (:mod:`.baselines`) and the utility summary
(:mod:`.model_utility`).
"""
