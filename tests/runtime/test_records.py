"""Records of several files sent as one zip or tar: names, links, counts and sizes checked before anything is
decompressed; lying headers and bombs refused; the private folder removed afterwards."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from torch2ort.errors import PredictInputError
from torch2ort.runtime.processors.records import MAX_MEMBERS, members, unpacked


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in files.items():
            zf.writestr(name, body)
    return buf.getvalue()


def _tar(entries: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tf.addfile(entry)
            else:
                info = tarfile.TarInfo(entry[0])
                info.size = len(entry[1])
                tf.addfile(info, io.BytesIO(entry[1]))
    return buf.getvalue()


def _link(name: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, "/etc/passwd"
    return info


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_a_tar_in_any_compression_and_a_zip_give_the_same_members(mode):
    files = {"r.hea": b"r 1 500 4\n", "r.dat": b"\x01\x02\x03\x04\x05\x06\x07\x08"}
    assert members(_tar(list(files.items()), mode), "t", 1000) == files
    assert members(_zip(files), "z", 1000) == files


@pytest.mark.parametrize("archive, needle", [
    (_zip({"../r.hea": b"x"}), "not a plain file name"),
    (_zip({"/abs.hea": b"x"}), "not a plain file name"),
    (_zip({"a\\b.hea": b"x"}), "not a plain file name"),
    (_zip({"sub/": b""}), "not a regular file"),
    (_tar([("../../r.dat", b"x")]), "not a plain file name"),
    (_tar([_link("r.dat")]), "not a regular file"),
    (_tar([_link("r.dat", tarfile.LNKTYPE)]), "not a regular file"),
    (_tar([("r.dat", b"x"), ("r.dat", b"y")]), "appears twice"),
    (_zip({f"f{i}": b"" for i in range(MAX_MEMBERS + 1)}), f"more than {MAX_MEMBERS} members"),
    (_zip({"r.dat": bytes(5000)}), "declares 5,000 bytes unpacked, over the limit of 4,096"),
    (_zip({"a": bytes(3000), "b": bytes(3000)}), "declares 6,000 bytes unpacked"),
    (_tar([("r.dat", bytes(5000))], "w:gz"), "declares 5,000 bytes unpacked"),
    (_tar([("r.dat", bytes(3000))])[:2048], "not a readable zip or tar"),  # cut short: its header lies
    (b"PK\x03\x04 junk", "not a readable zip or tar"),
    (_zip({}), "an empty archive"),
], ids=lambda v: v if isinstance(v, str) else "archive")  # stable ids: a gzip header holds the time
def test_hostile_archives_are_one_line_errors(archive, needle):
    with pytest.raises(PredictInputError, match=needle) as info:
        members(archive, "the upload", 4096)
    assert "\n" not in str(info.value)


def test_the_private_folder_holds_the_members_and_is_removed():
    with unpacked(_zip({"r.hea": b"h", "r.dat": b"d"}), "t", 100) as folder:
        assert sorted(p.name for p in folder.iterdir()) == ["r.dat", "r.hea"]
        assert folder.stat().st_mode & 0o077 == 0  # private: only this user
    assert not folder.exists()
