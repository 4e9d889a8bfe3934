"""Datasets: the synthetic phenotype faces (embedded default), CSV manifests, GMDB releases."""

from gmxai_eval.data.base import DATASETS, FaceBatch, Sample, collate  # noqa: F401
