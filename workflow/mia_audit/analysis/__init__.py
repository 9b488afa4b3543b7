"""Stage 6, analysis: who carries the risk and how well it is measured.

Tail-composition tests per subgroup attribute (:mod:`.subgroups`), their meta-analysis
(:mod:`.meta_analysis`), convergence over nested model subsets (:mod:`.convergence`) and the
adaptive audit's stopping rule (:mod:`.adaptive`).
"""
