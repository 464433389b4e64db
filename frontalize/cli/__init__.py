"""Command-line layer: argument parsing, logging set-up and exit codes. Nothing imports it."""
