"""One module per screen (Hardware, Config, Train, Runs) plus the shared modal dialogs."""
