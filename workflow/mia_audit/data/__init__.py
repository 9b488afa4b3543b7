"""Stage 1, data: a data set in its published layout → the records table and the model inputs.

Adapters (:mod:`.adapters`, one per layout, in a registry), the shared rules for ids, splits and
subgroup columns (:mod:`.records`), the checks of a data set's config (:mod:`.spec`),
validation and preparation (:mod:`.prepare`), and the files they write (:mod:`.store`,
:mod:`.layout`). :mod:`.synthetic` generates the synthetic imaging cohort.
"""
