"""Outreach: who the Committee's decisions are mailed to, the decisions, and the mailings.

Pure modules: they take text or bytes and return frozen dataclasses. The database side of
contacts and decisions lives in `mailflow/store/contacts.py` and `mailflow/store/decisions.py`.
"""
