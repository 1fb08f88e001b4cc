"""Providers: one per kind of upstream, behind the protocol in `base.py`."""
