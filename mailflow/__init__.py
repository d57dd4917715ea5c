"""mailflow: e-mail intake and outreach for the human rights of parliamentarians."""

__version__ = "0.1.0"
