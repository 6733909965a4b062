"""The `wsl-diff` command line. Each subcommand module parses, validates and calls one library function."""
