"""Modelyard: a self-hosted model catalog and unified inference gateway."""

__version__ = "0.1.0"
