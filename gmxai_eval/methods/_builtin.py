"""Imports every module that registers built-in methods (filled in by the methods package)."""
