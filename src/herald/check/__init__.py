"""Checkers: they read histories of what happened and say which guarantees held."""
