"""A record of several files (a WFDB ``.hea`` plus its ``.dat``) sent as one zip or tar, unpacked safely.

An upload is hostile until checked, so before anything is decompressed:

- every member is a regular file with a plain name (no folder, no ``..``, no link, no device);
- at most ``MAX_MEMBERS`` members, each and all together at most ``limit`` bytes as their headers
  declare them;

then each member is read only up to its declared size, and a member that yields another size
than declared (a lying header) or fails its CRC is refused. Nothing is written outside a private
temporary directory (``unpacked``), which is removed when the ``with`` block ends::

    with unpacked(data, "the record", limit=64 << 20) as folder:
        read(folder / "r.hea")
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from torch2ort.errors import PredictInputError

MAX_MEMBERS = 64  # a WFDB record is a header and a few data files
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")  # gzip, bzip2, xz (a compressed tar)


def is_archive(data: bytes) -> bool:
    """A zip, a tar, or a gzip/bzip2/xz stream (taken for a compressed tar)."""
    return data.startswith(ZIP_MAGIC + COMPRESSED_MAGIC) or data[257:262] == b"ustar"


def _plain(name: str, what: str) -> str:
    """The member's name when it is a plain file name; anything with a path or odd bytes is refused."""
    if (not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith(".")
            or any(ord(c) < 32 for c in name) or len(name) > 255):
        raise PredictInputError(f"{what}: member {name[:80]!r} is not a plain file name (no folders, no paths)")
    return name


def _zip_members(data: bytes, what: str, limit: int) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        _count(len(infos), what)
        for info in infos:
            mode = info.external_attr >> 16
            if info.is_dir() or (mode and (mode & 0o170000) not in (0, 0o100000)):
                raise PredictInputError(f"{what}: member {info.filename[:80]!r} is not a regular file "
                                        "(a folder or a link)")
            _plain(info.filename, what)
        _sizes([(i.filename, i.file_size) for i in infos], what, limit)
        out = {}
        for info in infos:
            with zf.open(info) as f:  # reads stop at the declared size; a wrong size fails the CRC check
                body = f.read(info.file_size + 1)
            if len(body) != info.file_size:
                raise PredictInputError(f"{what}: member {info.filename!r} holds {len(body):,} bytes, its header "
                                        f"declares {info.file_size:,}")
            out[info.filename] = body
    return out


def _tar_members(data: bytes, what: str, limit: int) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    total = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
        while (member := tf.next()) is not None:  # one header at a time: a bomb of headers stops at the count
            _count(len(out) + 1, what)
            if not member.isreg():
                raise PredictInputError(f"{what}: member {member.name[:80]!r} is not a regular file "
                                        "(a folder, a link or a device)")
            name = _plain(member.name, what)
            total += member.size
            _sizes([(name, member.size)], what, limit, total)
            f = tf.extractfile(member)
            body = f.read(member.size + 1) if f else b""
            if len(body) != member.size:
                raise PredictInputError(f"{what}: member {name!r} holds {len(body):,} bytes, its header "
                                        f"declares {member.size:,}")
            if name in out:
                raise PredictInputError(f"{what}: member {name!r} appears twice")
            out[name] = body
    return out


def _count(n: int, what: str) -> None:
    if n > MAX_MEMBERS:
        raise PredictInputError(f"{what} holds more than {MAX_MEMBERS} members; a record is a header and its data")


def _sizes(members: list[tuple[str, int]], what: str, limit: int, total: int | None = None) -> None:
    """Each member's declared size, and the sum, at most ``limit`` bytes: checked before decompressing."""
    for name, size in members:
        if size > limit:
            raise PredictInputError(f"{what}: member {name!r} declares {size:,} bytes unpacked, over the limit of "
                                    f"{limit:,}")
    total = sum(size for _, size in members) if total is None else total
    if total > limit:
        raise PredictInputError(f"{what} declares {total:,} bytes unpacked, over the limit of {limit:,}")


def members(data: bytes, what: str, limit: int) -> dict[str, bytes]:
    """The archive's files by name, checked (see the module docstring); a bad archive is one line."""
    try:
        if data.startswith(ZIP_MAGIC):
            found = _zip_members(data, what, limit)
        else:
            found = _tar_members(data, what, limit)
    except PredictInputError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError, RuntimeError,
            NotImplementedError) as exc:  # CRC errors, truncated streams, encrypted or unknown compression
        raise PredictInputError(f"{what} is not a readable zip or tar: {str(exc)[:200]}") from None
    if not found:
        raise PredictInputError(f"{what} is an empty archive")
    return found


@contextlib.contextmanager
def unpacked(data: bytes, what: str, limit: int) -> Iterator[Path]:
    """The checked members written to a private temporary directory (mode 0700), removed afterwards.

    Only for decoders that read files by name (wfdb reads a record's ``.dat`` by the name in its ``.hea``).
    """
    files = members(data, what, limit)
    with tempfile.TemporaryDirectory(prefix="torch2ort-record-") as tmp:
        folder = Path(tmp)
        for name, body in files.items():
            (folder / name).write_bytes(body)
        yield folder


__all__ = ["MAX_MEMBERS", "is_archive", "members", "unpacked"]
