"""Small shared pieces every layer may use: units, names, quiet, text plots."""
