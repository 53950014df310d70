"""Headless subcommands; each module registers one command group on the CLI parser."""
