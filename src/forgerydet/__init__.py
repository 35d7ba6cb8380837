"""forgerydet: face-forgery detection by difference attention against a bank of real faces."""

__version__ = "0.1.0"
