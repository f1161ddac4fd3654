"""The `solaris` command."""
