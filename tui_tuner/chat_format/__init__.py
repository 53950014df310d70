"""The one chat-template renderer."""
