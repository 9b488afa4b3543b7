"""Stage 2, sampling: which target model trains on which patient.

:mod:`.membership`: the balanced (models × patients) design and its file; :mod:`.subsets`:
membership-balanced subsets of a finished design (convergence, adaptive audits).
"""
