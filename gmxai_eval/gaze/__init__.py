"""gaze area."""
