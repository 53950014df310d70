"""The Textual app (`tui-tuner` with no arguments). The only package that imports textual."""
