"""Stage 7, differential privacy audited: the bound a DP training run puts on any attack
(:mod:`.bounds`), the test of each record against it (:mod:`.violations`), the audit's DP
columns (:mod:`.audit`), and a simulated DP-SGD run for validating them (:mod:`.simulation`).
DP-SGD itself and its accounting are part of training (:mod:`mia_audit.train`).
"""
