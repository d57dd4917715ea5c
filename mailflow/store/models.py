"""mailflow's database schema: import models from here.

The tables are defined in models_base (Base, vocabularies, audit log), models_intake, models_cases
and models_outreach; importing this module registers all of them on `Base.metadata`, which
Alembic and the relationships between modules need.
"""

from __future__ import annotations

from mailflow.store.models_base import (
    NAMING_CONVENTION,
    ActionType,
    AuditLog,
    Base,
    MessageKind,
    RecipientRole,
    ReporterType,
    Violation,
)
from mailflow.store.models_cases import (
    REPORT_STATUSES,
    VISIBILITIES,
    ActionReport,
    ActionReportAction,
    Case,
    Decision,
    DecisionDocument,
    LinkSuggestion,
    Person,
    Report,
    Reporter,
    action_report_cases,
    case_persons,
    case_violations,
    decision_cases,
    is_case_code,
    report_cases,
    report_persons,
    report_violations,
)
from mailflow.store.models_intake import (
    CHANNELS,
    LINK_METHODS,
    MESSAGE_STATUSES,
    Attachment,
    Blob,
    ImapCheckpoint,
    Message,
    MessageSource,
)
from mailflow.store.models_outreach import (
    CAMPAIGN_STATUSES,
    DELIVERY_STATES,
    SUPPRESSION_REASONS,
    Campaign,
    Contact,
    Delivery,
    Suppression,
    normalise_email,
)
from mailflow.vocabulary import (
    ACTION_TYPES,
    KINDS,
    RECIPIENT_ROLES,
    REPORTER_TYPES,
    VIOLATIONS,
    Term,
)

# Each vocabulary table and the mailflow.vocabulary tuple it must hold.
VOCABULARY_TABLES: dict[str, tuple[Term, ...]] = {
    "message_kinds": KINDS,
    "violations": VIOLATIONS,
    "action_types": ACTION_TYPES,
    "reporter_types": REPORTER_TYPES,
    "recipient_roles": RECIPIENT_ROLES,
}

__all__ = [
    "CAMPAIGN_STATUSES",
    "CHANNELS",
    "DELIVERY_STATES",
    "LINK_METHODS",
    "MESSAGE_STATUSES",
    "NAMING_CONVENTION",
    "REPORT_STATUSES",
    "SUPPRESSION_REASONS",
    "VISIBILITIES",
    "VOCABULARY_TABLES",
    "ActionReport",
    "ActionReportAction",
    "ActionType",
    "Attachment",
    "AuditLog",
    "Base",
    "Blob",
    "Campaign",
    "Case",
    "Contact",
    "Decision",
    "DecisionDocument",
    "Delivery",
    "ImapCheckpoint",
    "LinkSuggestion",
    "Message",
    "MessageKind",
    "MessageSource",
    "Person",
    "RecipientRole",
    "Report",
    "Reporter",
    "ReporterType",
    "Suppression",
    "Violation",
    "action_report_cases",
    "case_persons",
    "case_violations",
    "decision_cases",
    "is_case_code",
    "normalise_email",
    "report_cases",
    "report_persons",
    "report_violations",
]
