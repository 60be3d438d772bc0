"""The ``testbed`` command: starts and stops the parts of the testbed."""
