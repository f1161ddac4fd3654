"""The server-rendered admin and personal pages."""
