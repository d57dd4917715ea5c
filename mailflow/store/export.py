"""What `mailflow export --jsonl` prints for each stored message: identifiers, kind, the record
it belongs to, case codes and links. Nothing about the reporter (no address, no name): this
output is meant for checks and integrations outside intake."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from mailflow.store.models import Message

BATCH = 500
FOLLOWED = ("reply", "case_code", "subject")  # linked_by values that attach to an earlier record


def exported(session: Session) -> Iterator[dict[str, Any]]:
    original = aliased(Message)
    query = (
        select(
            Message.message_id,
            Message.sha256,
            Message.kind,
            Message.status,
            Message.report_id,
            Message.action_report_id,
            Message.classification,
            Message.linked_by,
            original.sha256,
        )
        .outerjoin(original, original.id == Message.duplicate_of_id)
        .order_by(Message.id)
        .execution_options(yield_per=BATCH)
    )
    for row in session.execute(query):
        labels = json.loads(row.classification) if row.classification else {}
        yield {
            "message_id": row.message_id,
            "sha256": row.sha256,
            "kind": row.kind,
            "status": row.status,
            "report_id": row.report_id,
            "action_report_id": row.action_report_id,
            "case_codes": labels.get("case_codes", []),
            "duplicate_of": row[8],
            "in_reply_to_record": (
                f"report:{row.report_id}" if row.linked_by in FOLLOWED and row.report_id else None
            ),
        }
