"""Support code for the test suites (not a test module)."""
