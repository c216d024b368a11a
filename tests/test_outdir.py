"""prepare_outdir: nothing a user wrote is deleted, even with --force."""

from __future__ import annotations

import pytest

from torch2ort.errors import OutputExistsError
from torch2ort.outdir import prepare_outdir


def test_new_and_empty_folders_are_used(tmp_path):
    assert prepare_outdir(tmp_path / "a" / "b", False, "m.json", "ours").is_dir()
    (tmp_path / "empty").mkdir()
    assert prepare_outdir(tmp_path / "empty", False, "m.json", "ours").is_dir()


def test_a_users_folder_is_never_deleted(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="pass --force"):
        prepare_outdir(out, False, "m.json", "ours")
    with pytest.raises(OutputExistsError, match="has no m.json, so it is not ours"):
        prepare_outdir(out, True, "m.json", "ours")
    assert (out / "notes.txt").read_text() == "keep me"


def test_our_own_output_is_replaced_with_force(tmp_path):
    out = tmp_path / "ours"
    out.mkdir()
    (out / "m.json").write_text("{}")
    (out / "old.bin").write_text("x")
    assert list(prepare_outdir(out, True, "m.json", "ours").iterdir()) == []


def test_files_and_symlinks_are_not_folders_to_replace(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputExistsError, match="not a directory"):
        prepare_outdir(tmp_path / "f", True, "m.json", "ours")
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "m.json").write_text("{}")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(OutputExistsError, match="not a directory"):
        prepare_outdir(tmp_path / "link", True, "m.json", "ours")
    assert (target / "m.json").is_file()
