"""Classification: from a parsed message to the label fields of SCHEMA.md, with reasons."""
