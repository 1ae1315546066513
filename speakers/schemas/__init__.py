"""JSON schemas of the speaker protocol messages (data files)."""
