"""`python -m tests.support.fake_provider [PORT] [--fast]`: the fake provider on its own, for benchmarks."""

import argparse

import uvicorn

from tests.support.fake_provider import app

parser = argparse.ArgumentParser(description="An OpenAI-compatible fake provider on loopback.")
parser.add_argument("port", type=int, nargs="?", default=8099)
parser.add_argument("--fast", action="store_true", help="estimate prompt tokens instead of tokenizing")
options = parser.parse_args()
uvicorn.run(app(options.fast), host="127.0.0.1", port=options.port, log_level="warning", access_log=False)
