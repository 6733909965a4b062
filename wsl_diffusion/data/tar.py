"""A streaming reader of tar archives (plain, gzip, bzip2 or xz): one pass, no listing first.

`walk_tar(open_stream(path))` yields (path, kind, data) per member in archive order. It reads only
the header fields a dataset loader needs (names, sizes, types; ustar prefixes, GNU long names and
pax path/size records), which is what makes a 60k-member archive load in well under a second
(Python's `tarfile` parses every header field in Python and takes about three times as long:
see benchmarks/tar_read.py).

A bad archive never hangs the reader, never makes it allocate what a header merely declares, and
never loads as a silently shorter dataset. Every problem is an :class:`ArchiveError` (a
`ValueError`) whose one-line message names the file, says what is wrong and what to do:

- header checksums are verified, and number fields must be octal or GNU base-256;
- pax extended headers are checked record by record (the length is a positive decimal number,
  the record fits in the header data and ends in a newline, it holds keyword=value, a `size`
  is a decimal number); pax and GNU long-name headers are capped at `MAX_META_BYTES`;
- a member's declared size must be non-negative, at most `max_member_bytes` for a file that is
  read into memory, and fit in what is left of the input: the rest of the file for a plain
  archive, deflate's largest expansion (1032:1) of the file for gzip. Data is read in 1 MiB
  chunks, so with bzip2 and xz (no useful bound) a short stream ends in an error after reading
  what is there, not after allocating what the header claims;
- the end-of-archive marker (a zero block) is required: the end of the data before it, inside a
  header or inside a member's data is a truncated archive. A single zero block followed by the
  end of the data is accepted (nothing is lost); one followed by more headers is an error;
- a compressed stream is read to its end after the marker, so that a cut stream or a bad CRC is
  noticed; decompressor errors (EOFError, zlib.error, lzma.LZMAError, OSError) become ArchiveErrors.
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

_BLOCK = 512
_ZEROS = bytes(_BLOCK)
MAX_MEMBER_BYTES = 1 << 31  # a file larger than this is not part of an image dataset
MAX_META_BYTES = 1 << 20  # pax extended headers and GNU long names: real ones hold a few KiB at most
GZIP_MAX_RATIO = 1032  # deflate's largest expansion (a 258-byte match coded in 2 bits)
_CHUNK = 1 << 20

_FILE_FLAGS = (b"0", b"\0", b"7")  # regular, old regular, contiguous
_NO_DATA_FLAGS = (b"1", b"2", b"3", b"4", b"5", b"6")  # links, devices, directory, fifo: no data blocks
_META_FLAGS = (b"L", b"K", b"x", b"g")  # GNU long name / long link name, pax extended / global
_META_NAMES = {b"L": "GNU long-name header", b"K": "GNU long-link header", b"x": "pax header",
               b"g": "pax global header"}
# What reading a decompressing stream raises on bad or cut data (OSError also covers read errors).
_STREAM_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError)
_REDOWNLOAD = "re-download or re-create it"


class ArchiveError(ValueError):
    """A tar archive that cannot be read; the message names the file and says what to do."""


class _BadHeader(Exception):
    """A header field that cannot be parsed (turned into an ArchiveError by walk_tar)."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _tar_number(field: bytes) -> int:
    """A numeric tar header field: octal text, or GNU base-256 (0x80: positive, 0xff: negative)."""
    lead = field[0] if field else 0
    if lead & 0x80:
        if lead == 0x80:
            return int.from_bytes(field[1:], "big")
        if lead == 0xFF:
            return int.from_bytes(field, "big", signed=True)
        raise _BadHeader("a number field is neither octal nor base-256")
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise _BadHeader("a number field is not octal") from None


def _signed_checksum(header: bytes) -> int:
    """The header checksum as some old tars computed it (bytes as signed chars)."""
    return sum(struct.unpack_from("148b8x356b", header)) + 8 * 32


def _pax_records(data: bytes) -> dict[str, str] | str:
    """A pax extended header ("<len> <key>=<value>\\n" records) -> {key: value}, or what is
    wrong with it. NUL bytes after the last record are tolerated (some writers pad with them)."""
    out, pos, size = {}, 0, len(data)
    while pos < size and data[pos] != 0:
        space = data.find(b" ", pos, min(pos + 24, size))
        field = data[pos:space] if space >= 0 else data[pos:pos + 24]
        if space < 0 or not field.isdigit():
            return f"a record length {field!r} is not a decimal number"
        length = int(field)
        if length < len(field) + 4:  # "<len> k=\n" at the least
            return f"a record declares length {length}, shorter than the record itself"
        end = pos + length
        if end > size:
            return f"a record of length {length} runs past the end of the {size}-byte header"
        if data[end - 1] != 0x0A:
            return "a record does not end with a newline"
        key, equals, value = data[space + 1:end - 1].partition(b"=")
        if not equals or not key:
            return f"a record holds {data[space + 1:end - 1][:40]!r}, not keyword=value"
        if key == b"size" and value and not (value.isdigit() and len(value) <= 19):
            return f"the size record holds {value[:40]!r}, not a number"
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos = end
    if data[pos:].strip(b"\0"):
        return "bytes after the last record"
    return out


class ArchiveStream:
    """The decompressed bytes of an archive, with what walk_tar needs to check them: the file name
    (for messages), the compression ("gzip", "bzip2", "xz" or None) and an upper bound of the
    decompressed size where there is one (`max_bytes`). A context manager; closing it closes
    the file."""

    def __init__(self, stream, *, name: str, compression: str | None = None,
                 max_bytes: int | None = None, raw=None):
        self.stream, self.name, self.compression, self.max_bytes = stream, name, compression, max_bytes
        self._raw = raw

    def read(self, n: int = -1) -> bytes:
        return self.stream.read(n)

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            if self._raw is not None and self._raw is not self.stream:
                self._raw.close()

    def __enter__(self) -> ArchiveStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_stream(path: Path) -> ArchiveStream:
    """The archive at `path` as an :class:`ArchiveStream`, decompressed by what its first bytes say
    (gzip, bzip2, xz or none). Use it as a context manager; pass it to :func:`walk_tar`."""
    name = str(path)
    try:
        raw = open(path, "rb")
    except OSError as exc:
        raise ArchiveError(f"cannot read archive {name}: cannot open it ({_one_line(exc)}); "
                           "check the path and its permissions") from None
    try:
        size = os.fstat(raw.fileno()).st_size
        magic = raw.read(6)
        raw.seek(0)
        if magic.startswith(b"\x1f\x8b"):
            stream, compression, max_bytes = gzip.GzipFile(fileobj=raw, mode="rb"), "gzip", GZIP_MAX_RATIO * size
        elif magic.startswith(b"BZh"):
            stream, compression, max_bytes = bz2.BZ2File(raw, "rb"), "bzip2", None
        elif magic.startswith(b"\xfd7zXZ"):
            stream, compression, max_bytes = lzma.LZMAFile(raw, "rb"), "xz", None
        else:
            stream, compression, max_bytes = raw, None, size
    except (OSError, lzma.LZMAError) as exc:
        raw.close()
        raise ArchiveError(f"cannot read archive {name}: {_one_line(exc)}; "
                           "check the file and the disk") from None
    return ArchiveStream(stream, name=name, compression=compression, max_bytes=max_bytes, raw=raw)


def _as_archive_stream(stream, name: str | None) -> ArchiveStream:
    """An ArchiveStream for whatever walk_tar was given (an open_stream result or a file object)."""
    if isinstance(stream, ArchiveStream):
        if name is not None and name != stream.name:
            return ArchiveStream(stream.stream, name=name, compression=stream.compression,
                                 max_bytes=stream.max_bytes)
        return stream
    if name is None:
        name = str(getattr(stream, "name", "<stream>"))
    compression, max_bytes = None, None
    if isinstance(stream, gzip.GzipFile):
        compression = "gzip"
    elif isinstance(stream, bz2.BZ2File):
        compression = "bzip2"
    elif isinstance(stream, lzma.LZMAFile):
        compression = "xz"
    elif isinstance(stream, (io.BufferedReader, io.FileIO)):  # a plain file: bound by what is left of it
        try:
            max_bytes = os.fstat(stream.fileno()).st_size - stream.tell()
        except (OSError, ValueError):
            max_bytes = None
    return ArchiveStream(stream, name=name, compression=compression, max_bytes=max_bytes)


class _Walk:
    """Where a pass is, for the messages."""

    __slots__ = ("name", "compression", "current", "last", "ended")

    def __init__(self, src: ArchiveStream):
        self.name, self.compression = src.name, src.compression
        self.current: str | None = None  # the member whose data is being read
        self.last: str | None = None  # the last member read completely
        self.ended = False  # the end-of-archive marker was found

    def error(self, what: str, advice: str = _REDOWNLOAD) -> ArchiveError:
        return ArchiveError(f"cannot read archive {self.name}: {what}; {advice}")

    def after(self) -> str:
        return f"after member {self.last!r}" if self.last is not None else "before the first member"

    def where(self) -> str:
        if self.ended:
            return "after the end-of-archive marker"
        return f"inside member {self.current!r}" if self.current is not None else self.after()

    def truncated(self) -> ArchiveError:
        return self.error(f"truncated tar archive (it ends {self.where()})")

    def stream_error(self, exc: BaseException) -> ArchiveError:
        """An exception from reading the (decompressing) stream, as a message about the archive."""
        comp = self.compression
        if isinstance(exc, EOFError):
            if comp:
                return self.error(f"the {comp} stream is truncated (it ends {self.where()}; {_one_line(exc)})")
            return self.truncated()
        if comp:
            return self.error(f"corrupt {comp} data ({self.where()}; {_one_line(exc)})")
        return self.error(f"read error ({self.where()}; {_one_line(exc)})", "check the file and the disk")


class _Reader:
    """Hands out exact byte counts from a stream that is read in 1 MiB chunks (a tar member is
    often smaller than 1 KiB, and a read call on a decompressing stream costs far more than that).
    Reads never ask for more than a chunk, so memory follows the data that is really there, not
    what a header declares. Stream errors are turned into ArchiveErrors by `walk.stream_error`."""

    __slots__ = ("stream", "walk", "buf", "pos", "base")

    def __init__(self, stream, walk: _Walk):
        self.stream, self.walk = stream, walk
        self.buf, self.pos = b"", 0
        self.base = 0  # offset of buf[0] in the stream

    def tell(self) -> int:
        return self.base + self.pos

    def _read(self) -> bytes:
        try:
            return self.stream.read(_CHUNK)
        except _STREAM_ERRORS as exc:
            raise self.walk.stream_error(exc) from None

    def take(self, n: int) -> bytes:
        """The next n bytes; fewer only where the stream ends."""
        pos, end = self.pos, self.pos + n
        if end <= len(self.buf):
            self.pos = end
            return self.buf[pos:end]
        parts = [self.buf[pos:]]
        have = len(parts[0])
        self.base += pos
        while have < n:
            more = self._read()
            if not more:
                break
            parts.append(more)
            have += len(more)
        self.buf = b"".join(parts)
        out = self.buf[:n]
        self.pos = len(out)
        return out

    def skip(self, n: int) -> int:
        """Pass over the next n bytes without keeping them; returns how many there were."""
        left = n - (len(self.buf) - self.pos)
        if left <= 0:
            self.pos += n
            return n
        self.base += len(self.buf)
        self.buf, self.pos = b"", 0
        while left > 0:
            more = self._read()
            if not more:
                return n - left
            if len(more) > left:
                self.buf, self.pos = more, left
                return n
            self.base += len(more)
            left -= len(more)
        return n

    def drain(self) -> None:
        """Read the rest of the stream (so that a decompressor checks its CRC and its end)."""
        self.base += len(self.buf)
        self.buf, self.pos = b"", 0
        while self._read():
            pass


def _end(walk: _Walk, reader: _Reader, header: bytes, meta_at: int | None, compressed: bool) -> None:
    """The header read was short or a zero block: a valid end of the archive, or an error."""
    at = reader.tell() - len(header)
    if len(header) == _BLOCK:  # a zero block: the end-of-archive marker
        if meta_at is not None:
            raise walk.error(f"corrupt tar archive (the extended header at byte {meta_at}, {walk.after()}, "
                             "is followed by the end-of-archive marker instead of a member)")
        walk.ended = True
        if reader.take(_BLOCK).strip(b"\0"):  # the marker's second block: zeros, or cut off
            raise walk.error(f"corrupt tar archive (a lone zero block at byte {at} is followed by data: "
                             "a damaged archive, or several archives joined)", "re-create it as one archive")
        if compressed:
            reader.drain()
        return
    if header:
        raise walk.error(f"truncated tar archive (it ends inside the header at byte {at}, {walk.after()})")
    if meta_at is not None:
        raise walk.error(f"truncated tar archive (it ends right after an extended header, {walk.after()})")
    if at == 0:
        raise walk.error("empty archive (no data" + (" after decompression)" if compressed else ")"))
    raise walk.error(f"truncated tar archive (it ends {walk.after()}, without the end-of-archive marker)")


def walk_tar(stream, *, name: str | None = None,
             max_member_bytes: int = MAX_MEMBER_BYTES) -> Iterator[tuple[str, str, bytes]]:
    """Yield (path, kind, data) for every member of a tar stream, in archive order.

    `stream` is what :func:`open_stream` returns, or any binary file object holding an
    uncompressed tar (or a gzip/bz2/lzma file object). `name` names the archive in messages
    (default: the stream's name). kind is "file" (regular and contiguous members; data is the
    file's bytes), "dir" (name without a trailing slash) or "other" (links, devices, fifos,
    unknown types; data empty). Understands ustar prefixes, GNU long names and pax path/size
    records -- what GNU tar, bsdtar and Python's tarfile write. Raises :class:`ArchiveError` for a
    bad archive; that can come after some members were yielded (a truncated download is only
    noticed at its end).
    """
    src = _as_archive_stream(stream, name)
    walk = _Walk(src)
    reader = _Reader(src.stream, walk)
    take, skip = reader.take, reader.skip
    limit = src.max_bytes  # upper bound of the stream's length, or None
    compressed = src.compression is not None
    long_name: str | None = None
    pax: dict[str, str] | None = None
    meta_at: int | None = None  # offset of the pax / long-name header that applies to the next member
    while True:
        header = take(_BLOCK)
        if len(header) < _BLOCK or header == _ZEROS:
            _end(walk, reader, header, meta_at, compressed)
            return
        try:
            # The checksum counts its own 8-byte field as spaces (8 * 32).
            checksum = _tar_number(header[148:156])
            if checksum != sum(header) - sum(header[148:156]) + 8 * 32 and checksum != _signed_checksum(header):
                raise _BadHeader("bad checksum")
            size = _tar_number(header[124:136])
        except _BadHeader as exc:
            at = reader.tell() - _BLOCK
            if at == 0:
                raise walk.error(f"not a tar archive (the first block is not a tar header: {exc})",
                                 "give a .tar, .tar.gz, .tar.bz2 or .tar.xz of the dataset folder") from None
            raise walk.error(f"corrupt tar archive (bad header at byte {at}, {walk.after()}: {exc})") from None
        flag = header[156:157]
        if flag in _META_FLAGS:  # metadata for the next member (or, for "g", for the archive)
            at = reader.tell() - _BLOCK
            what = _META_NAMES[flag]
            if not 0 <= size <= MAX_META_BYTES:
                raise walk.error(f"corrupt tar archive (an extended header ({what}) at byte {at}, {walk.after()}, "
                                 f"declares {size} bytes; real ones hold a few KiB)")
            padded = (size + _BLOCK - 1) // _BLOCK * _BLOCK
            data = take(padded)
            if len(data) < padded:
                raise walk.error(f"truncated tar archive (it ends inside the {what} at byte {at}, {walk.after()})")
            data = data[:size]
            if flag == b"L":
                long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            elif flag != b"K":
                records = _pax_records(data)
                if isinstance(records, str):
                    raise walk.error(f"corrupt tar archive (bad pax header at byte {at}, {walk.after()}: {records})")
                if flag == b"g":
                    continue  # global records (defaults for all members) are not used here
                pax = records
            meta_at = at
            continue
        name = header[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        if header[257:263] == b"ustar\0" and header[345]:  # POSIX ustar: name = prefix/name
            prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            name = f"{prefix}/{name}"
        if meta_at is not None:
            if pax:
                name = pax.get("path") or long_name or name
                if pax.get("size"):
                    size = int(pax["size"])  # checked to be at most 19 decimal digits
            elif long_name is not None:
                name = long_name
            long_name, pax, meta_at = None, None, None
        if flag in _FILE_FLAGS:
            kind = "file"
        elif flag in _NO_DATA_FLAGS:
            if flag == b"5":
                kind, name = "dir", name.rstrip("/") or name
            else:
                kind = "other"
            size = 0
        else:
            kind = "other"  # unknown types (and GNU sparse files): their data is skipped
        data = b""
        if size:
            if size < 0:
                raise walk.error(f"corrupt tar archive (member {name!r} declares a negative size)")
            if kind == "file" and size > max_member_bytes:
                raise walk.error(f"member {name!r} declares {size} bytes, more than the {max_member_bytes} "
                                 "bytes this reader holds in memory",
                                 "remove it from the archive, or re-create the archive if it is corrupt")
            if limit is not None and size > limit - reader.tell():
                left = max(limit - reader.tell(), 0)
                if compressed:
                    raise walk.error(f"corrupt tar archive (member {name!r} declares {size} bytes, more than "
                                     f"a {src.compression} file of this size can hold: at most {left} more)")
                raise walk.error(f"truncated tar archive (it ends inside member {name!r}, which declares "
                                 f"{size} bytes where the file has {left} left)")
            walk.current = name
            pad = -size % _BLOCK
            if kind == "file":
                data = take(size)
                if len(data) < size or (pad and skip(pad) < pad):
                    raise walk.truncated()
            elif skip(size + pad) < size + pad:
                raise walk.truncated()
            walk.current = None
        walk.last = name
        yield name, kind, data
