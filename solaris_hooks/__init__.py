"""solaris_hooks: per-user token quotas for LibreChat users, inside the LiteLLM proxy.

LiteLLM loads `solaris_hooks.callback.quota_callback` (see litellm-config.yaml); the
rest of the package is importable without starting anything.
"""

__version__ = "0.1.0"
