"""Stage 9, figures: one module per kind of figure, in the shared style of :mod:`.style`.

* :mod:`.registry` — every experiment figure: its tables, drawing function and caption;
* :mod:`.experiment` — draws an experiment's figures from its tables, each read once;
* :mod:`.risk` — record and patient risk: the risk contrast, record AUC, standard errors,
  survival functions by experiment;
* :mod:`.attacks` — ROC curves of the aggregate and public-model attacks;
* :mod:`.subgroups` — tail composition per attribute and the meta-analysis scatter;
* :mod:`.convergence` — the headlines against the number of models;
* :mod:`.dp` — patient risk per privacy budget ε.

Each function returns a matplotlib figure; :func:`.style.save` writes it as PNG and PDF.
"""
