"""Fixtures of the real-data loader tests (builders live in realdata_builders.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from realdata_builders import MANIFEST_ROWS, make_gmdb, make_image, write_csv


@pytest.fixture
def manifest_dir(tmp_path: Path) -> Path:
    """A folder with ``manifest.csv`` (MANIFEST_ROWS) and its six 8x10 PNG images."""
    for i, (p, *_rest) in enumerate(MANIFEST_ROWS):
        make_image(tmp_path / p, seed=i)
    write_csv(tmp_path / "manifest.csv", ["path", "label", "subject", "split"], MANIFEST_ROWS)
    return tmp_path


@pytest.fixture
def gmdb_root(tmp_path: Path) -> Path:
    """A fake ``GestaltMatcherDB/`` holding one release (see realdata_builders.GMDB_LISTS)."""
    return make_gmdb(tmp_path)
