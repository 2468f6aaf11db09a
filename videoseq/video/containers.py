"""Container inspection: is an AVI, MP4/MOV or Matroska/WebM file cut short?

Read from the file's bytes alone (no decoder): the top-level structure of these
containers declares its own length, so a file that ends before its last declared
element is known to be truncated before any frame is decoded.
"""

from __future__ import annotations

import os

TRUNCATED = "the file is truncated:"  # start of the reason of a file cut short (doctor reports these apart)


def container_truncation(path: str | os.PathLike) -> str | None:
    """Why an AVI, MP4/MOV or Matroska/WebM file is cut short, or None when it is whole.

    The top-level structure of these containers declares its own length: RIFF
    chunks (AVI), ISO boxes (MP4, MOV) and the EBML Segment (MKV, WebM). A file
    that ends before its last declared element was cut off in a copy or download;
    decoders then return a half-decoded last picture without any error (seen with
    UCF101's MPEG-4 AVIs), so such a file is refused instead. Other formats, and
    elements of unknown size (live recordings), are not judged.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(12)
        if head[:4] == b"RIFF":
            return _riff_truncation(f, size)
        if head[4:8] in _ISO_TOP_BOXES:
            return _iso_truncation(f, size)
        if head[:4] == b"\x1a\x45\xdf\xa3":
            return _ebml_truncation(f, size)
    return None


_ISO_TOP_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"moof", b"styp"}


def _riff_truncation(f, size: int) -> str | None:
    """AVI: a chain of ``RIFF`` chunks (more than one past 1 GB, OpenDML)."""
    position = 0
    while position + 8 <= size:
        f.seek(position)
        header = f.read(8)
        if header[:4] != b"RIFF":
            return None  # trailing bytes after the last chunk: not ours to judge
        end = position + 8 + int.from_bytes(header[4:8], "little")
        if end > size:
            return f"a RIFF chunk declares {end} bytes, the file has {size}"
        position = end + (end & 1)
    return None


def _iso_truncation(f, size: int) -> str | None:
    """MP4/MOV: top-level boxes, each ``size`` (32 bit, or 64 bit after size 1) + type."""
    position = 0
    while position + 8 <= size:
        f.seek(position)
        header = f.read(16)
        length, kind = int.from_bytes(header[:4], "big"), header[4:8]
        if not (kind.isascii() and kind.isalnum() or kind in _ISO_TOP_BOXES):
            return None
        if length == 0:  # the box runs to the end of the file
            return None
        if length == 1:
            length = int.from_bytes(header[8:16], "big")
        if length < 8:
            return f"box {kind.decode('latin-1')!r} at byte {position} declares an impossible size {length}"
        if position + length > size:
            name = kind.decode("latin-1")
            return f"box {name!r} at byte {position} declares {length} bytes, {size - position} remain"
        position += length
    return None


def _ebml_truncation(f, size: int) -> str | None:
    """Matroska/WebM: the EBML header, then a Segment whose size covers the rest."""
    f.seek(4)
    header_size, width = _ebml_size(f)
    if header_size is None:
        return None
    f.seek(4 + width + header_size)
    if f.read(4) != b"\x18\x53\x80\x67":  # Segment
        return None
    segment_start = f.tell()
    segment_size, width = _ebml_size(f)
    if segment_size is None:  # unknown size: a live recording
        return None
    end = segment_start + width + segment_size
    return f"its Segment declares {end} bytes, the file has {size}" if end > size else None


def _ebml_size(f) -> tuple[int | None, int]:
    """An EBML variable-length size: ``(value or None when unknown, bytes used)``."""
    first = f.read(1)
    if not first or first[0] == 0:
        return None, 1
    width = 9 - first[0].bit_length()
    value = first[0] & ((1 << (8 - width)) - 1)
    for byte in f.read(width - 1):
        value = (value << 8) | byte
    unknown = value == (1 << (7 * width)) - 1
    return (None if unknown else value), width

