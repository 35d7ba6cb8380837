"""forgerydet: face-forgery detection by difference attention against a bank of real faces."""

# Raised whenever a release changes what a file scores at the same settings, or what the outputs hold: scan's JSON and
# evaluate's metrics.json record it, and `--resume` takes over no score another version wrote (README "Versions").
__version__ = "0.2.0"
