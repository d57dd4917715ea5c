"""The type of a file from its first bytes: the declared type and the name are the sender's
claim, and a PDF named photo.jpg must be treated as a PDF."""

from __future__ import annotations

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"\x1f\x8b", "application/gzip"),
    (b"BZh", "application/x-bzip2"),
    (b"\xfd7zXZ\x00", "application/x-xz"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (b"Rar!\x1a\x07", "application/vnd.rar"),
    (b"{\\rtf", "application/rtf"),
    (b"MZ", "application/x-msdownload"),
    (b"\x7fELF", "application/x-executable"),
    (b"OggS", "audio/ogg"),
    (b"ID3", "audio/mpeg"),
    (b"fLaC", "audio/flac"),
    (b"%!PS", "application/postscript"),
)
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_OLE_STREAMS: tuple[tuple[bytes, str], ...] = (
    ("WordDocument".encode("utf-16-le"), "application/msword"),
    ("Workbook".encode("utf-16-le"), "application/vnd.ms-excel"),
    ("PowerPoint Document".encode("utf-16-le"), "application/vnd.ms-powerpoint"),
    ("__substg1.0_".encode("utf-16-le"), "application/vnd.ms-outlook"),
)
_OOXML: tuple[tuple[bytes, str], ...] = (
    (b"word/", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    (b"xl/", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    (b"ppt/", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
)
_TEXT_MARKERS: tuple[tuple[bytes, str], ...] = (
    (b"<!doctype html", "text/html"),
    (b"<html", "text/html"),
    (b"<?xml", "application/xml"),
    (b"begin:vcalendar", "text/calendar"),
    (b"begin:vcard", "text/vcard"),
)
_HEAD = 8192
# PDF readers accept the header anywhere in the first kilobyte, so a sniffer must too.
_PDF_WINDOW = 1024


def sniff(data: bytes) -> str:
    if not data:
        return "application/x-empty"
    if b"%PDF-" in data[:_PDF_WINDOW]:
        return "application/pdf"
    if data.startswith(_OLE):
        return _ole_kind(data)
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return _zip_kind(data)
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    riff = _riff_kind(data)
    if riff:
        return riff
    if data[4:8] == b"ftyp":
        return "image/heic" if data[8:12] in (b"heic", b"heix", b"mif1") else "video/mp4"
    return _text_kind(data[:_HEAD])


def _ole_kind(data: bytes) -> str:
    for marker, kind in _OLE_STREAMS:
        if marker in data:
            return kind
    return "application/x-ole-storage"


def _zip_kind(data: bytes) -> str:
    head = data[: _HEAD * 8]
    if head[30:38] == b"mimetype":
        declared = head[38:120].split(b"PK", 1)[0]
        if declared.startswith(b"application/vnd.oasis.opendocument"):
            return declared.decode("ascii", "replace")
    if b"[Content_Types].xml" in head:
        for marker, kind in _OOXML:
            if marker in head:
                return kind
    return "application/zip"


def _riff_kind(data: bytes) -> str:
    if not data.startswith(b"RIFF"):
        return ""
    return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}.get(
        data[8:12], "application/octet-stream"
    )


def _text_kind(head: bytes) -> str:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "text/plain"
    stripped = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    for marker, kind in _TEXT_MARKERS:
        if stripped.startswith(marker):
            return kind
    if b"\x00" in head:
        return "application/octet-stream"
    controls = sum(1 for byte in head if byte < 0x20 and byte not in b"\t\n\r\f\x1b")
    return "text/plain" if controls <= len(head) // 100 else "application/octet-stream"
