"""Stage 5, audit: record and patient risk, and the aggregate attacks.

Record statistics (:mod:`.stats`: bi-normal AUC, its SEs, the survival function), patient
statistics (:mod:`.patients`), moderated variances for few models (:mod:`.moderation`), the
attacks of the standard protocol (:mod:`.attacks`, a registry) and the stage's tables from a
cube (:mod:`.cube_audit`). Methods and references: docs/methods.md.
"""
