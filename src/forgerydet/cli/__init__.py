"""The command line: argument parsing, one library call per command, and rendering (app.py registers them)."""
