"""The ``edge-sdk`` command line and the machine report (``doctor``)."""
