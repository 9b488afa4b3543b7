"""Attacks on models not trained here: released scores of a model (:mod:`.scores`) and public
pretrained models queried on candidate records (:mod:`.public_models`).
"""
