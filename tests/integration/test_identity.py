"""Who pays for a call, checked against LiteLLM's own proxy code: our order of identity
sources is the one LiteLLM uses for its spend logs. Imports LiteLLM's whole proxy module
(seconds), hence not a unit test; the rules themselves: tests/unit/test_identity.py."""

from __future__ import annotations

from solaris_hooks.quota.identity import named_identity

header = "x-litellm-end-user-id"


class TestNamedIdentity:
    def test_the_order_is_the_one_litellm_uses_for_its_spend_logs(self):
        """For every mix of sources, LiteLLM's own get_end_user_id_from_request_body picks the same one."""
        from litellm.proxy.auth.auth_utils import get_end_user_id_from_request_body

        sources = {
            "customer": lambda request: request["proxy_server_request"]["headers"].update(
                {"x-litellm-customer-id": "customer"}
            ),
            "end_user": lambda request: request["proxy_server_request"]["headers"].update(
                {"x-litellm-end-user-id": "end_user"}
            ),
            "user": lambda request: request.update(user="user"),
            "litellm_metadata": lambda request: request.update(litellm_metadata={"user": "litellm_metadata"}),
            "metadata": lambda request: request.update(metadata={"user_id": "metadata"}),
            "safety": lambda request: request.update(safety_identifier="safety"),
        }
        names = list(sources)
        for mask in range(1, 2 ** len(names)):
            request: dict = {"proxy_server_request": {"headers": {}}}
            for index, name in enumerate(names):
                if mask & (1 << index):
                    sources[name](request)
            headers = request["proxy_server_request"]["headers"]
            body = {key: value for key, value in request.items() if key != "proxy_server_request"}
            assert named_identity(request, header, None) == get_end_user_id_from_request_body(body, headers), mask
