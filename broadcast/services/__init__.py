"""Use cases of the server: each takes a database session and plain values, and returns models."""
