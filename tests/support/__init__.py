"""Helpers for the integration tests: child processes and Docker clean-up.

The fixtures that wrap these helpers live in tests/conftest.py.
"""
