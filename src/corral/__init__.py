"""Corral: a self-hosted control panel for VPS hosting providers."""

__version__ = "0.1.0"
