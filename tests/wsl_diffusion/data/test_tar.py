"""The streaming tar reader: normal archives read completely and exactly; bad ones (crafted pax
records and sizes, truncation anywhere, broken compression, garbage) end in a one-line ValueError
naming the file -- never a hang, a MemoryError or a silently shorter result."""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import random
import re
import tarfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from time_limits import time_limit
from PIL import Image

from wsl_diffusion.data.sources import load_source
from wsl_diffusion.data.tar import ArchiveError, open_stream, walk_tar

COMPRESS = {None: lambda b: b, "gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}
SUFFIX = {None: ".tar", "gz": ".tar.gz", "bz2": ".tar.bz2", "xz": ".tar.xz"}


# ----------------------------------------------------------------------------- helpers
def read_all(path: Path) -> list[tuple[str, str, bytes]]:
    with time_limit(5), open_stream(path) as stream:
        return list(walk_tar(stream))


def expect_error(path: Path, *patterns: str) -> str:
    """The archive must fail with a one-line ValueError that names the file and matches patterns."""
    with pytest.raises(ValueError) as info:
        read_all(path)
    message = str(info.value)
    assert isinstance(info.value, ArchiveError)
    assert str(path) in message and "\n" not in message, message
    for pattern in patterns:
        assert pattern in message, message
    return message


def write(tmp_path: Path, raw: bytes, compression=None, stem="a") -> Path:
    path = tmp_path / f"{stem}{SUFFIX[compression]}"
    path.write_bytes(COMPRESS[compression](raw))
    return path


def padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 512)


def header(name: str, size: int, typeflag: bytes = tarfile.REGTYPE) -> bytearray:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, typeflag
    return bytearray(info.tobuf(tarfile.USTAR_FORMAT))


def fix_checksum(block: bytearray) -> bytearray:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return block


def base256(block: bytearray, value: int) -> bytearray:
    """Store `value` in the size field as GNU base-256."""
    block[124:136] = bytes([0x80]) + value.to_bytes(11, "big")
    return fix_checksum(block)


def pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


END = b"\0" * 1024


def pax_archive(records: bytes, data: bytes = b"hello") -> bytes:
    """One pax extended header holding `records`, then a member a.png with `data`."""
    return (bytes(header("PaxHeader/a.png", len(records), tarfile.XHDTYPE)) + padded(records)
            + bytes(header("a.png", len(data))) + padded(data) + END)


MEMBERS = [  # (name, kind, data) as walk_tar must yield them
    ("top", "dir", b""),
    ("top/empty.png", "file", b""),
    ("top/one.png", "file", b"1"),
    ("top/b511.png", "file", bytes(range(256)) + bytes(255)),
    ("top/b512.png", "file", bytes(512)),
    ("top/b513.png", "file", b"x" * 513),
    ("top/big.bin", "file", random.Random(0).randbytes(70_000)),
    ("top/" + "long" * 30 + ".png", "file", b"a long name"),
    ("top/ünïcödé.png", "file", b"non-ascii name"),
    ("top/link", "other", b""),
    ("top/hard", "other", b""),
]


def build(members=MEMBERS, fmt=tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif name.endswith("link"):
                info.type, info.linkname = tarfile.SYMTYPE, "one.png"
            elif name.endswith("hard"):
                info.type, info.linkname = tarfile.LNKTYPE, "top/one.png"
            else:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if kind == "file" else None)
    return out.getvalue()


def member_ends(raw: bytes) -> list[tuple[str, int]]:
    """(name, offset just past its padded data) for each member of a valid plain archive."""
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return [(m.name, m.offset_data + (m.size + 511) // 512 * 512 if m.isreg() else m.offset_data)
                for m in tar.getmembers()]


# ----------------------------------------------------------------------------- normal archives
@pytest.mark.parametrize("compression", [None, "gz", "bz2", "xz"])
@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_normal_archive_reads_every_member_exactly(tmp_path, compression, fmt):
    path = write(tmp_path, build(fmt=fmt), compression)
    assert read_all(path) == MEMBERS


def test_ustar_prefix_contiguous_fifo_and_empty_archive(tmp_path):
    members = [("d/" * 60 + "x.png", "file", b"prefix"), ("c.png", "file", b"contiguous"),
               ("fifo", "other", b"")]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, _, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if name == "c.png":
                info.type = tarfile.CONTTYPE
            if name == "fifo":
                info.type, info.size = tarfile.FIFOTYPE, 0
            tar.addfile(info, io.BytesIO(data))
    assert read_all(write(tmp_path, out.getvalue())) == members
    assert read_all(write(tmp_path, END, stem="empty")) == []  # a valid archive with no members


def test_lone_zero_block_at_the_end_is_accepted_but_not_before_data(tmp_path):
    raw = bytes(header("a.png", 5)) + padded(b"hello")
    assert read_all(write(tmp_path, raw + bytes(512))) == [("a.png", "file", b"hello")]
    expect_error(write(tmp_path, raw + bytes(512) + raw + END, stem="joined"), "lone zero block")


def test_stopping_early_is_fine(tmp_path):
    with open_stream(write(tmp_path, build(), "gz")) as stream:
        for name, kind, data in walk_tar(stream):
            if kind == "file":
                break
    assert name == "top/empty.png"


def test_a_plain_file_object_is_accepted(tmp_path):
    with open(write(tmp_path, build()), "rb") as f:
        assert list(walk_tar(f)) == MEMBERS


# ----------------------------------------------------------------------------- crafted archives
@pytest.mark.parametrize("compression", [None, "gz"])
@pytest.mark.parametrize("records", [b"0 path=x\n", b"-9 path=x\n", b"9 path=\n", b"99 path=x\n",
                                     b"12 nokeyhere\n", b"10 size=1x\n", b"5 =x\n", b"x path=x\n",
                                     pax_record("size", "12x"), pax_record("size", "9" * 30),
                                     pax_record("path", "b.png") + b"\0\0junk"])
def test_malformed_pax_records_are_errors_not_hangs(tmp_path, compression, records):
    expect_error(write(tmp_path, pax_archive(records), compression), "bad pax header")


def test_pax_records_nul_padding_empty_path_and_global_headers(tmp_path):
    raw = pax_archive(pax_record("path", "b.png") + b"\0" * 20)
    assert read_all(write(tmp_path, raw)) == [("b.png", "file", b"hello")]
    raw = pax_archive(pax_record("path", "") + pax_record("mtime", "1.5"))  # empty: the header's name
    assert read_all(write(tmp_path, raw, stem="b")) == [("a.png", "file", b"hello")]
    records = pax_record("path", "ignored.png")  # a global header is read, checked, and not applied
    raw = bytes(header("g", len(records), tarfile.XGLTYPE)) + padded(records) + pax_archive(b"")
    assert read_all(write(tmp_path, raw, stem="c")) == [("a.png", "file", b"hello")]
    bad = pax_record("path", "x")[:-1] + b"!"
    raw = bytes(header("g", len(bad), tarfile.XGLTYPE)) + padded(bad) + pax_archive(b"")
    expect_error(write(tmp_path, raw, stem="d"), "bad pax header", "newline")


def test_extended_header_followed_by_the_end_marker_is_an_error(tmp_path):
    records = pax_record("path", "lost.png")
    raw = bytes(header("PaxHeader/x", len(records), tarfile.XHDTYPE)) + padded(records) + END
    expect_error(write(tmp_path, raw), "followed by the end-of-archive marker")


@pytest.mark.parametrize("compression", [None, "gz", "bz2"])
def test_huge_pax_size_is_an_error_not_a_memory_error(tmp_path, compression):
    path = write(tmp_path, pax_archive(pax_record("size", "99999999999999")), compression)
    expect_error(path, "'a.png' declares 99999999999999 bytes")


@pytest.mark.parametrize("compression", [None, "gz", "xz"])
def test_base256_size_of_1e15_is_an_error_not_a_memory_error(tmp_path, compression):
    raw = bytes(base256(header("a.png", 5), 10**15)) + padded(b"hello") + END
    expect_error(write(tmp_path, raw, compression), "'a.png' declares 1000000000000000 bytes")


@pytest.mark.parametrize("compression", [None, "bz2"])
def test_skipping_a_huge_non_file_member_does_not_hang(tmp_path, compression):
    raw = bytes(base256(header("odd", 0, b"Z"), 10**15)) + END  # unknown type: tarfile skips its data
    expect_error(write(tmp_path, raw, compression), "odd")


def test_oversized_extended_headers_are_errors(tmp_path):
    raw = bytes(base256(header("././@LongLink", 0, tarfile.GNUTYPE_LONGNAME), 10**12)) + END
    expect_error(write(tmp_path, raw), "extended header", "declares 1000000000000 bytes")
    big_pax = pax_archive(pax_record("size", "5") + pax_record("comment", "x" * (1 << 20)))
    expect_error(write(tmp_path, big_pax, stem="bigpax"), "pax header", "declares 1048")
    # Long digit runs are ordinary data for this reader (tarfile of old Pythons was quadratic in them).
    digits = pax_record("comment", "7" * 8000)
    assert read_all(write(tmp_path, pax_archive(digits * 2), stem="digits")) == [("a.png", "file", b"hello")]


def test_gzip_size_bound_refuses_more_than_deflate_can_expand_to(tmp_path):
    raw = bytes(base256(header("a.png", 5), 10**9)) + padded(b"hello") + END  # under the 2 GiB limit
    expect_error(write(tmp_path, raw, "gz"), "'a.png' declares 1000000000 bytes",
                 "more than a gzip file of this size can hold")


@pytest.mark.parametrize("compression", ["bz2", "xz"])
def test_declared_size_is_not_allocated_up_front(tmp_path, compression):
    """bzip2 and xz give no useful bound: the data is read in chunks until the stream runs out."""
    raw = bytes(base256(header("a.png", 5), 10**9)) + padded(b"hello") + END
    path = write(tmp_path, raw, compression)
    tracemalloc.start()
    try:
        expect_error(path, "truncated tar archive (it ends inside member 'a.png')")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, peak


def test_non_file_members_yield_no_data_and_unknown_types_are_skipped(tmp_path):
    odd = header("odd", 700, b"Z")  # an unknown type with data: skipped
    raw = bytes(odd) + padded(b"z" * 700) + bytes(header("a.png", 5)) + padded(b"hello") + END
    assert read_all(write(tmp_path, raw)) == [("odd", "other", b""), ("a.png", "file", b"hello")]


def test_gnu_header_fields_are_not_taken_for_a_ustar_prefix(tmp_path):
    info = tarfile.TarInfo("a.png")
    info.size = 5
    block = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    assert block[257:265] == b"ustar  \0"
    block[345:357] = b"%011o\0" % 1_700_000_000  # GNU atime
    raw = bytes(fix_checksum(block)) + padded(b"hello") + END
    assert read_all(write(tmp_path, raw)) == [("a.png", "file", b"hello")]


def test_signed_checksum_of_old_tars_is_accepted(tmp_path):
    block = header("ü.png", 5)
    block[148:156] = b" " * 8
    signed = sum(b - 256 if b > 127 else b for b in block)
    block[148:156] = b"%06o\0 " % signed
    assert read_all(write(tmp_path, bytes(block) + padded(b"hello") + END)) == [("ü.png", "file", b"hello")]


def test_the_name_in_messages_comes_from_the_caller_or_the_stream(tmp_path):
    raw = bytes(header("a.png", 5)) + padded(b"hello")  # no end marker
    with pytest.raises(ArchiveError, match=r"cannot read archive my-data\.tar: truncated"):
        list(walk_tar(io.BytesIO(raw), name="my-data.tar"))
    with pytest.raises(ArchiveError, match=r"cannot read archive <stream>: truncated"):
        list(walk_tar(io.BytesIO(raw)))
    path = write(tmp_path, raw, "gz")
    with gzip.open(path) as stream, pytest.raises(ArchiveError, match=re.escape(str(path))):
        list(walk_tar(stream))


def test_a_member_over_the_memory_limit_is_an_error(tmp_path):
    with open_stream(write(tmp_path, build(), "gz")) as stream, pytest.raises(ValueError, match="big.bin"):
        list(walk_tar(stream, max_member_bytes=60_000))


def test_negative_size_is_an_error(tmp_path):
    block = header("a.png", 0)
    block[124:136] = b"\xff" * 12  # base-256 -1
    expect_error(write(tmp_path, bytes(fix_checksum(block)) + END), "negative size")


# ----------------------------------------------------------------------------- truncation
def test_truncated_inside_a_pax_header(tmp_path):
    raw = build(fmt=tarfile.PAX_FORMAT, members=[("ünï.png", "file", b"data")])
    assert raw[156:157] == tarfile.XHDTYPE
    expect_error(write(tmp_path, raw[:512 + 7]), "truncated", "inside the pax header")
    expect_error(write(tmp_path, raw[:300], stem="b"), "truncated", "inside the header at byte 0")
    expect_error(write(tmp_path, raw[:1024], stem="c"), "truncated", "right after an extended header")


@pytest.mark.parametrize("compression", [None, "gz", "bz2", "xz"])
def test_truncated_at_every_member_boundary(tmp_path, compression):
    raw = build()
    for i, (name, end) in enumerate(member_ends(raw)):
        expect_error(write(tmp_path, raw[:end], compression, stem=f"cut{i}"), "truncated",
                     f"after member {name!r}, without the end-of-archive marker")


@pytest.mark.parametrize("cut", [1, 100, 513, 5000, 40_000])
def test_truncated_inside_member_data_or_header(tmp_path, cut):
    raw = build()
    data_end = member_ends(raw)[-1][1]
    expect_error(write(tmp_path, raw[:data_end - cut]), "truncated")


def test_truncated_plain_image_tarball_does_not_load_as_a_smaller_dataset(tmp_path):
    folder = tmp_path / "folder"
    for i in range(18):
        cls = folder / "train" / ("a" if i % 2 else "b")
        cls.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((4, 4), i * 10, np.uint8)).save(cls / f"{i:02d}.png")
    whole = tmp_path / "whole.tar"
    with tarfile.open(whole, "w") as tar:
        tar.add(folder / "train", arcname="train")
    train, test = load_source(str(whole))
    assert len(train) + len(test) == 18
    raw = whole.read_bytes()
    ends = member_ends(raw)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(raw[:ends[12][1]])  # a member boundary, about two thirds in
    with pytest.raises(ValueError, match=r"cut\.tar: truncated tar archive \(it ends after member"):
        load_source(str(cut))


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_gzip_stream(tmp_path, keep):
    packed = gzip.compress(build())
    path = tmp_path / "t.tar.gz"
    path.write_bytes(packed[:int(len(packed) * keep)])
    expect_error(path, "truncated")
    path.write_bytes(packed[:-4])  # only the length field of the gzip trailer is missing
    expect_error(path, "gzip stream is truncated")


def test_corrupt_gzip_payload_is_caught_by_the_crc(tmp_path):
    packed = bytearray(gzip.compress(build(), compresslevel=0))  # stored blocks: payload bytes as-is
    packed[len(packed) // 2] ^= 0x55  # inside big.bin's random data: tar headers stay valid
    path = tmp_path / "crc.tar.gz"
    path.write_bytes(bytes(packed))
    expect_error(path, "corrupt gzip data")


def test_missing_end_marker_is_an_error(tmp_path):
    raw = bytes(header("a.png", 5)) + padded(b"hello")
    expect_error(write(tmp_path, raw), "without the end-of-archive marker")


def test_bad_checksum_after_the_first_member_is_an_error(tmp_path):
    raw = bytearray(build())
    second = member_ends(bytes(raw))[1][1] - 512  # the second member's header (it has no data)
    raw[second + 10] ^= 1
    expect_error(write(tmp_path, bytes(raw)), "bad header", "bad checksum")


# ----------------------------------------------------------------------------- not archives
def test_garbage_empty_and_missing_files(tmp_path):
    expect_error(write(tmp_path, random.Random(1).randbytes(5000), stem="noise"), "not a tar archive")
    expect_error(write(tmp_path, b"\x1f\x8b" + random.Random(2).randbytes(3000), stem="fakegz"),
                 "gzip data")
    expect_error(write(tmp_path, b"BZh9" + random.Random(3).randbytes(3000), stem="fakebz"), "bzip2 data")
    expect_error(write(tmp_path, b"", stem="empty"), "empty archive")
    expect_error(write(tmp_path, b"", "gz", stem="emptygz"), "empty archive")
    expect_error(write(tmp_path, random.Random(4).randbytes(5000), "xz", stem="noisexz"), "not a tar archive")
    with pytest.raises(ValueError, match="cannot open it"):
        open_stream(tmp_path / "missing.tar")


# ----------------------------------------------------------------------------- mutation fuzzing
BASE = build([("d", "dir", b""), ("d/ünï.png", "file", b"p" * 700), ("d/" + "n" * 120, "file", b"q" * 1500),
              ("d/e.png", "file", b""), ("d/l", "other", b"")])

PAX_KEYS = ["path", "size", "linkpath", "mtime", "hdrcharset", "GNU.sparse.map", "GNU.sparse.size",
            "GNU.sparse.major", "GNU.sparse.minor", "GNU.sparse.name", "GNU.sparse.realsize",
            "GNU.sparse.numblocks", "GNU.sparse.offset", "GNU.sparse.numbytes"]
PAX_VALUES = st.one_of(st.integers(-10, 10**15).map(str), st.sampled_from(["0,512,1024,5", "1", "0", "BINARY"]),
                       st.text(max_size=12))
NUMBER = st.one_of(st.integers(0, 4096), st.integers(-(256**11) + 1, 256**11 - 1))
TYPEFLAGS = st.sampled_from([bytes([c]) for c in b"0125679SxgLKXZ\0"])
MUTATION = st.one_of(  # byte-level surgery, and header surgery that keeps the checksum valid
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 1 << 20)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=600)),
    st.tuples(st.just("write"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=24)),
    st.tuples(st.just("size"), st.integers(0, 1 << 20), NUMBER),
    st.tuples(st.just("type"), st.integers(0, 1 << 20), TYPEFLAGS),
    st.tuples(st.just("pax"), st.integers(0, 1 << 20),
              st.lists(st.tuples(st.sampled_from(PAX_KEYS), PAX_VALUES), min_size=1, max_size=4)),
)


def number_field(value: int) -> bytes:
    """A 12-byte tar number: octal where it fits, else GNU base-256 (0xff-led when negative)."""
    if 0 <= value < 8**11:
        return b"%011o\0" % value
    return bytes([0x80]) + value.to_bytes(11, "big") if value > 0 else b"\xff" + (256**11 + value).to_bytes(11, "big")


def mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op, pos, *arg in ops:
        pos %= max(len(buf), 1)
        block = pos // 512 * 512  # header surgery: any block, made a well-formed header
        if op == "flip" and buf:
            buf[pos] ^= arg[0]
        elif op == "cut":
            del buf[pos:]
        elif op == "insert":
            buf[pos:pos] = arg[0]
        elif op == "write":
            buf[pos:pos + len(arg[0])] = arg[0]
        elif op in ("size", "type") and block + 512 <= len(buf):
            head = bytearray(buf[block:block + 512])
            if op == "size":
                head[124:136] = number_field(arg[0])
            else:
                head[156:157] = arg[0]
            buf[block:block + 512] = fix_checksum(head)
        elif op == "pax":
            records = b"".join(pax_record(key, value) for key, value in arg[0])
            buf[block:block] = bytes(header("PaxHeader/x", len(records), tarfile.XHDTYPE)) + padded(records)
    return bytes(buf)


def check_mutant(path: Path, stage: str, ops) -> None:
    """Compress-then-mutate, mutate-then-compress or plain: a clean error or sane members."""
    raw = BASE if stage == "after" else mutate(BASE, ops)
    packed = {"plain": raw, "before": gzip.compress(raw), "after": mutate(gzip.compress(BASE), ops)}[stage]
    path.write_bytes(packed)
    bound = len(raw) if stage != "after" else 1032 * len(packed)
    try:
        members = read_all(path)
    except ValueError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc), str(exc)
        return
    assert sum(len(data) for _, _, data in members) <= bound
    for name, kind, data in members:
        assert isinstance(name, str) and kind in ("file", "dir", "other")
        assert kind == "file" or data == b""


FUZZ_ARGS = dict(stage=st.sampled_from(["plain", "plain", "before", "after"]),
                 ops=st.lists(MUTATION, min_size=1, max_size=4))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**FUZZ_ARGS)
def test_mutated_archives_fail_cleanly_or_read_sanely(tmp_path_factory, stage, ops):
    check_mutant(tmp_path_factory.getbasetemp() / "fuzz.tar.gz", stage, ops)


@pytest.mark.slow
@settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**FUZZ_ARGS)
def test_mutated_archives_fail_cleanly_or_read_sanely_long(tmp_path_factory, stage, ops):
    check_mutant(tmp_path_factory.getbasetemp() / "fuzz_long.tar.gz", stage, ops)
