"""The conformance suite run with ``pytest conformance/`` (issue 4)."""
