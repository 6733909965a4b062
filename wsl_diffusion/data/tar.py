"""A streaming reader of tar archives (plain, gzip, bzip2 or xz): one pass, no listing first.

`walk_tar(open_stream(path))` yields (path, kind, data) per member in archive order. It reads only
the header fields a dataset loader needs (names, sizes, types; ustar prefixes, GNU long names and
pax path/size records), which is what makes a 60k-member archive load in seconds.
"""
from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Iterator
from pathlib import Path

_BLOCK = 512


def _tar_number(field: bytes) -> int:
    """A numeric tar header field: octal text, or GNU base-256 when the top bit is set."""
    if field and field[0] & 0x80:
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise ValueError("bad tar header (a number field is not octal): not a tar archive, or corrupt") from None


def _pax_records(data: bytes) -> dict[str, str]:
    """A pax extended header ("<len> <key>=<value>\n" records) -> {key: value}."""
    out, pos = {}, 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        length = int(data[pos:space])
        key, _, value = data[space + 1: pos + length - 1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def open_stream(path: Path):
    """The archive as a byte stream, decompressed by what its first bytes say (gzip, bz2, xz, none)."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(path, "rb")
    if magic.startswith(b"\xfd7zXZ"):
        return lzma.open(path, "rb")
    return open(path, "rb")


class _Reader:
    """Hands out exact byte counts from a stream that is read in 1 MiB chunks (a tar member is
    often smaller than 1 KiB, and a read call on a decompressing stream costs far more than that)."""

    def __init__(self, stream, chunk: int = 1 << 20):
        self.stream, self.chunk = stream, chunk
        self.buf, self.pos = b"", 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            parts = [self.buf[self.pos:]]
            have = len(parts[0])
            while have < n:
                more = self.stream.read(max(self.chunk, n - have))
                if not more:
                    break
                parts.append(more)
                have += len(more)
            self.buf, self.pos, end = b"".join(parts), 0, n
        out = self.buf[self.pos:end]
        self.pos = min(end, len(self.buf))
        return out


def _padded(size: int) -> int:
    return (size + _BLOCK - 1) // _BLOCK * _BLOCK


def walk_tar(stream) -> Iterator[tuple[str, str, bytes]]:
    """Yield (path, kind, data) for every member of an uncompressed tar stream, in archive order.

    kind is "file", "dir" or "other"; data is a file's bytes (empty for the others). Understands ustar
    prefixes, GNU long names and pax path/size records -- what GNU tar, bsdtar and Python's tarfile
    write. Python's own tarfile parses every header field in Python (~150 us per member), which
    makes walking a 60k-member archive take many seconds; this reads only the fields needed.
    """
    reader = _Reader(stream)
    long_name: str | None = None
    pax: dict[str, str] = {}
    while True:
        header = reader.take(_BLOCK)
        if not header or header.count(0) == _BLOCK:  # end of archive (EOF or a zero block)
            return
        if len(header) < _BLOCK:
            raise ValueError("archive ends in the middle of a header (truncated download?)")
        # The checksum counts its own 8-byte field as spaces (8 * 32).
        if _tar_number(header[148:156]) != sum(header) - sum(header[148:156]) + 8 * 32:
            raise ValueError("bad tar header checksum: not a tar archive, or corrupt")
        size = _tar_number(header[124:136])
        flag = header[156:157]
        if flag in (b"L", b"K", b"x", b"g"):  # metadata for the next member
            data = reader.take(_padded(size))[:size]
            if flag == b"L":
                long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            elif flag == b"x":
                pax = _pax_records(data)
            continue
        name = header[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        if header[257:262] == b"ustar" and header[345] != 0:
            prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            name = f"{prefix}/{name}"
        if long_name is not None or pax:
            name = pax.get("path", long_name or name)
            size = int(pax.get("size", size))
            long_name, pax = None, {}
        kind = "file" if flag in (b"0", b"\0", b"7") else "dir" if flag == b"5" else "other"
        if kind == "dir":
            size = 0
        # The member's data, padding included, is read whether or not the consumer wants it:
        # it is in the buffer already and slicing it is cheaper than a lazy reader.
        block = reader.take(_padded(size))
        if len(block) < _padded(size):
            raise ValueError("archive ends in the middle of a file (truncated download?)")
        yield name, kind, block[:size]
