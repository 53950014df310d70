"""The one run-config schema: loading with YAML positions, --set overrides, reference."""
