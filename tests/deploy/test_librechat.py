"""The LibreChat example configuration points at the proxy, names the user, and asks only for
models the proxy serves. Requests as LibreChat sends them: tests/e2e/test_librechat.py."""

from __future__ import annotations

import yaml

from tests.support.suite import repo_dir


class TestLibreChatConfig:
    def test_the_example_points_at_the_proxy_and_names_the_user(self):
        """examples/librechat.yaml: the proxy's /v1, the identity header, and only models the proxy serves."""
        librechat = yaml.safe_load((repo_dir / "examples" / "librechat.yaml").read_text())
        (endpoint,) = librechat["endpoints"]["custom"]
        assert endpoint["baseURL"].endswith(":4000/v1")
        assert endpoint["headers"] == {"x-litellm-end-user-id": "{{LIBRECHAT_USER_EMAIL}}"}
        config = yaml.safe_load((repo_dir / "litellm-config.yaml").read_text())
        served = {model["model_name"] for model in config["model_list"]}
        assert set(endpoint["models"]["default"]) <= served
        assert endpoint["titleModel"] in served
