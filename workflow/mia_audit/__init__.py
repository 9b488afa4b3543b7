"""Patient-level membership-inference audit of medical AI models.

The importable library behind the Snakemake workflow, one subpackage per stage in pipeline
order: :mod:`.data` → :mod:`.sampling` → :mod:`.train` → :mod:`.query` → :mod:`.audit` →
:mod:`.analysis` → :mod:`.dp` → :mod:`.external` → :mod:`.plots` → :mod:`.pipeline`. A module
imports only from its own stage, an earlier one, or the foundations shared by all
(:mod:`.errors`, :mod:`.integrity`, :mod:`.provenance`, :mod:`.device`, :mod:`.storage`,
:mod:`.roc`); ``tests/pipeline/test_layers.py`` holds the line. Extension points are
registries: docs/extending.md.
"""

__version__ = "0.1.0"
