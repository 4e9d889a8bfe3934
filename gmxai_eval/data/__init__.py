"""Datasets: the synthetic phenotype faces (embedded default), CSV manifests, GMDB releases."""

from gmxai_eval.data.base import DATASETS, FaceBatch, Sample, collate  # noqa: F401
from gmxai_eval.data import manifest, gmdb  # noqa: F401,E402  (registers csv_manifest, gmdb)
