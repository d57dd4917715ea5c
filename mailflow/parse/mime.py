"""Walking the stdlib MIME tree: body text, attachments, forwarded and bounce parts, defects.

Body text comes from inline text/plain parts, else inline text/html (converted); parts inside
a message/rfc822 belong to that forwarded message, not to the body. In a multipart/report the
returned message is bounce material, not a forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message

from mailflow.parse import fields
from mailflow.parse.attachments import build_attachment
from mailflow.parse.htmltext import html_to_text
from mailflow.parse.limits import ParseLimits
from mailflow.parse.model import Attachment, Forwarded
from mailflow.parse.payload import payload_bytes
from mailflow.parse.text import bounded, clean_body, decode_bytes

_BODY_TYPES = ("text/plain", "text/html")


@dataclass(slots=True)
class Tree:
    """What one walk collects. Lists are shared with nested walks (attachments, defects)."""

    limits: ParseLimits
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    forwarded: list[Forwarded] = field(default_factory=list)
    delivery_status: list[str] = field(default_factory=list)
    returned_headers: list[str] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)

    def nested(self) -> Tree:
        """A walker for an enclosed message: own body text, shared everything else."""
        tree = Tree(self.limits)
        tree.attachments = self.attachments
        tree.forwarded = self.forwarded
        tree.defects = self.defects
        return tree

    def text(self) -> tuple[str, bool]:
        """The human text and whether it came from HTML."""
        plain = "\n\n".join(t for t in self.plain if t.strip())
        if plain.strip() or not self.html:
            return plain, False
        markup = "\n".join(self.html)
        markup = bounded(markup, self.limits.max_html_chars, "HTML body", self.defects)
        return html_to_text(markup), True


def walk(part: Message, tree: Tree, path: str = "/", *, in_report: bool = False) -> None:
    tree.defects.extend(f"{type(defect).__name__} at {path}" for defect in part.defects)
    ctype = part.get_content_type()
    payload = part.get_payload()
    if ctype == "message/delivery-status":
        tree.delivery_status.append(_blocks_text(payload))
    elif isinstance(payload, list):
        _container(part, ctype, payload, tree, path, in_report=in_report)
    elif ctype == "text/rfc822-headers":
        tree.returned_headers.append(_part_text(part, tree, path))
    elif part.get_content_maintype() == "multipart":
        # No usable boundary: the stdlib keeps the body as one string. Reading it as text keeps
        # the human words searchable (with the MIME scaffolding) instead of losing them.
        tree.defects.append(f"multipart without a usable boundary read as text at {path}")
        tree.plain.append(_part_text(part, tree, path))
    elif ctype in _BODY_TYPES and _is_inline(part):
        target = tree.plain if ctype == "text/plain" else tree.html
        target.append(_part_text(part, tree, path))
    else:
        tree.attachments.append(
            build_attachment(part, len(tree.attachments), tree.limits, _Notes(tree, path))
        )


def _container(
    part: Message,
    ctype: str,
    children: list[Message | str],
    tree: Tree,
    path: str,
    *,
    in_report: bool,
) -> None:
    messages = [child for child in children if isinstance(child, Message)]
    if part.get_content_maintype() == "message" and messages:
        inner = messages[0]
        if in_report:
            tree.returned_headers.append(header_text(inner))
        else:
            tree.forwarded.append(forwarded_message(inner, tree, _child(path, 1)))
        return
    report = ctype == "multipart/report"
    for index, child in enumerate(messages, 1):
        walk(child, tree, _child(path, index), in_report=report or in_report)


def forwarded_message(inner: Message, tree: Tree, path: str) -> Forwarded:
    notes = _Notes(tree, path)
    sub = tree.nested()
    walk(inner, sub, path)
    text, _html = sub.text()
    return Forwarded(
        origin="rfc822",
        from_=fields.first_address(inner, "From", notes),
        subject=fields.decode_value(fields.raw_value(inner, "Subject") or "", notes),
        date=fields.parse_date(fields.raw_value(inner, "Date")),
        text=bounded(clean_body(text), tree.limits.max_text_chars, "forwarded text", notes),
    )


def _is_inline(part: Message) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    if disposition == "attachment":
        return False
    try:
        return part.get_filename() is None
    except Exception:  # malformed parameters: treat as an attachment
        return False


def _part_text(part: Message, tree: Tree, path: str) -> str:
    data = payload_bytes(part)
    try:
        charset = part.get_content_charset()
    except Exception:  # a malformed charset parameter
        charset = None
    text, note = decode_bytes(data, charset)
    if note:
        tree.defects.append(f"{note} at {path}")
    return clean_body(text)


def header_text(message: Message) -> str:
    """The header block as written (unfolding kept), cleaned of NUL and lone surrogates."""
    lines = [f"{name}: {value}" for name, value in fields.raw_items(message)]
    return clean_body(_from_escaped("\n".join(lines)))


def _blocks_text(payload: object) -> str:
    if isinstance(payload, list):
        blocks = [header_text(block) for block in payload if isinstance(block, Message)]
        return "\n\n".join(blocks)
    return clean_body(_from_escaped(str(payload)))


def _from_escaped(text: str) -> str:
    data = text.encode("utf-8", "surrogateescape")
    return decode_bytes(data, None)[0]


def _child(path: str, index: int) -> str:
    return f"{path.rstrip('/')}/{index}"


class _Notes(list[str]):
    """A notes list that files each note into the tree's defects with the part's path."""

    def __init__(self, tree: Tree, path: str) -> None:
        super().__init__()
        self._tree = tree
        self._path = path

    def append(self, note: str) -> None:
        self._tree.defects.append(f"{note} at {self._path}")
