"""Packaged benchmark specs (TOML presets): default, quick, full, shortcut."""
