"""The baseline: a LiteLLM callback that has every hook solaris_hooks has, and does nothing.

Measuring against it (rather than against no callback) isolates our work from the cost
LiteLLM pays for calling any callback at all.
"""

from __future__ import annotations

from litellm.integrations.custom_logger import CustomLogger


class NoopCallback(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        return data

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        return None

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        return None

    async def async_post_call_failure_hook(
        self, request_data, original_exception, user_api_key_dict, traceback_str=None
    ):
        return None


noop = NoopCallback()
