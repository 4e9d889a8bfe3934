"""``gmxai-eval train --out``: the checkpoint location is checked before any data generation or
training, and nothing is written when it cannot be used (the CLI contract table covers a file in
the way, a folder in the way and an existing checkpoint end to end)."""

from __future__ import annotations

import os

import pytest

from gmxai_eval.cli import main
from gmxai_eval.errors import OutputError
from gmxai_eval.models.checkpoint import check_checkpoint_target


def test_free_target_passes_and_names_the_pt_file(tmp_path):
    assert check_checkpoint_target(tmp_path / "new" / "deeper" / "m") == tmp_path / "new" / "deeper" / "m.pt"
    assert check_checkpoint_target(tmp_path / "m.json") == tmp_path / "m.pt"
    assert os.listdir(tmp_path) == []  # the check creates nothing


def test_existing_checkpoint_needs_overwrite(tmp_path):
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(OutputError, match=r"m\.json.*--overwrite"):
        check_checkpoint_target(tmp_path / "m")
    assert check_checkpoint_target(tmp_path / "m", overwrite=True) == tmp_path / "m.pt"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="no permission"):
            check_checkpoint_target(ro / "sub" / "m")
    finally:
        ro.chmod(0o700)


def test_cli_checks_before_generating_the_dataset(tmp_path, capsys, monkeypatch):
    """The dataset would be generated under --root if the check came after it: the root stays empty
    and training is never reached."""
    import gmxai_eval.models.default as default

    monkeypatch.setattr(default, "train_on", lambda *a, **k: pytest.fail("training started"))
    (tmp_path / "m.pt").write_bytes(b"old")
    root = tmp_path / "root"
    root.mkdir()
    rc = main(["train", "--data", "synthetic_faces_tiny", "--root", str(root), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "m.pt" in err[0] and "--overwrite" in err[0]
    assert os.listdir(root) == [] and (tmp_path / "m.pt").read_bytes() == b"old"


def test_unwritable_folder_is_refused_even_where_permissions_cannot_be_dropped(tmp_path, monkeypatch):
    """As root a chmod does not stop writes; the permission answer is simulated for one folder."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(ro) else real(p, mode))
    with pytest.raises(OutputError, match=r"ro: .*no permission"):
        check_checkpoint_target(ro / "sub" / "m")
