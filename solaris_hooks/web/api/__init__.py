"""The /solaris JSON API routers."""
