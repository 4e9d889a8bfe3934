"""runner area."""
