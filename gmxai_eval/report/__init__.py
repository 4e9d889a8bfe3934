"""report area."""
