"""HTTP: the /solaris API and the admin and personal pages, mounted on LiteLLM's app."""
