"""mailflow's database layer: schema (models), engines and sessions, migrations.

Importing the package loads every model, so `Base.metadata` is always complete.
"""

from __future__ import annotations

from mailflow.store import models
from mailflow.store.engine import (
    describe_url,
    make_engine,
    session_factory,
    translate_db_errors,
)
from mailflow.store.migrate import check_current, current, downgrade, head, upgrade
from mailflow.store.models import Base

__all__ = [
    "Base",
    "check_current",
    "current",
    "describe_url",
    "downgrade",
    "head",
    "make_engine",
    "models",
    "session_factory",
    "translate_db_errors",
    "upgrade",
]
