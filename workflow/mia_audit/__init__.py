"""Patient-level membership-inference audit of medical AI models.

The importable library behind the Snakemake workflow: data adapters, sampling,
ensemble training, querying into the confidence cube, and the audit statistics.
"""

__version__ = "0.1.0"
