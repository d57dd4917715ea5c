"""Commands that show what mailflow understands of messages, without touching the database:
`classify` (label fields, one JSON object per file with `--jsonl`) and `explain` (which rules
fired and why).

`classify --jsonl` prints the label fields of the corpus format (SCHEMA.md), which include MP
names and case codes but never the reporter's identity: its output is meant for checks and
integrations. `explain` is the secretariat's deliberate look at one message.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailflow.classify.rules import RuleSet
from mailflow.errors import MailflowError, MessageError
from mailflow.service import build
from mailflow.settings import Settings
from mailflow.store import migrate
from mailflow.store.engine import translate_db_errors
from mailflow.store.export import exported

if TYPE_CHECKING:
    from mailflow.understanding import Understanding


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "classify", parents=[common], help="classify .eml files (no database): kind, cases ..."
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--jsonl", action="store_true", help="one JSON object per file (SCHEMA.md)")
    _rules_option(p)
    p.set_defaults(handler=cmd_classify)

    p = sub.add_parser("explain", parents=[common], help="show which rules fired for a message")
    p.add_argument("file", type=Path, metavar="FILE")
    _rules_option(p)
    p.set_defaults(handler=cmd_explain)

    p = sub.add_parser(
        "export",
        parents=[common],
        help="print every stored message as JSON lines (no reporter data)",
    )
    p.add_argument("--jsonl", action="store_true", required=True, help="JSON lines (the format)")
    p.set_defaults(handler=cmd_export)


def _rules_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rules",
        type=Path,
        default=None,
        metavar="DIR",
        help="rules directory (default: service.rules_dir)",
    )


def load_rules(args: argparse.Namespace, settings: Settings) -> RuleSet:
    return RuleSet.load(args.rules or settings.rules_dir)


def classify_file(path: Path, rules: RuleSet) -> dict[str, Any]:
    """The JSON object `classify --jsonl` prints for one file; `error` set when unparseable."""
    # Imported here: parsing and the rules load mail-parser, which other commands never need.
    from mailflow.understanding import understand  # noqa: PLC0415

    row: dict[str, Any] = {"file": str(path)}
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MailflowError(f"cannot read {path}: {exc.strerror}") from None
    try:
        row.update(understand(raw, rules).classification.labels())
    except MessageError as exc:
        row.update({"kind": None, "error": str(exc)})
    return row


def cmd_classify(args: argparse.Namespace, settings: Settings) -> int:
    rules = load_rules(args, settings)
    failed = 0
    for path in args.files:
        row = classify_file(path, rules)
        failed += "error" in row
        if args.jsonl:
            print(json.dumps(row, ensure_ascii=False), flush=False)
        else:
            print(_summary(row))
    sys.stdout.flush()
    return 1 if failed else 0


def _summary(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"{row['file']}: unparseable: {row['error']}"
    shown = [f"kind={row['kind']}", f"language={row['language']}"]
    for key, value in row.items():
        if key not in ("file", "kind", "language") and value not in (None, [], False):
            shown.append(f"{key}={','.join(value) if isinstance(value, list) else value}")
    return f"{row['file']}: " + " ".join(shown)


def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    from mailflow.understanding import understand  # noqa: PLC0415

    rules = load_rules(args, settings)
    raw = args.file.read_bytes() if args.file.is_file() else b""
    if not raw:
        raise MailflowError(f"cannot read {args.file}", hint="give the path of an .eml file")
    try:
        result = understand(raw, rules)
    except MessageError as exc:
        print(f"{args.file}: cannot be parsed, it would be quarantined: {exc}")
        return 1
    print(_explanation(args.file, result))
    return 0


def _explanation(path: Path, result: Understanding) -> str:
    parsed, found = result.parsed, result.classification
    lines = [f"{path}", f"  subject: {parsed.subject!r}"]
    for key, value in found.labels().items():
        lines.append(f"  {key}: {json.dumps(value, ensure_ascii=False)}")
        for fired in found.fired:
            if fired.field == key:
                lines.append(f"      <- {fired.rule}: {fired.value} ({fired.evidence!r})")
    if parsed.defects:
        lines.append("  parser defects: " + "; ".join(parsed.defects))
    return "\n".join(lines)


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    app = build(settings)
    try:
        migrate.check_current(app.engine)
        with translate_db_errors(), app.sessions() as session:
            for row in exported(session):
                sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        app.close()
    sys.stdout.flush()
    return 0
