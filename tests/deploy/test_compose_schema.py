"""docker-compose.yml against the Compose Specification's JSON schema, as Compose v2 checks it.

`docker compose` (v2, compose-go) validates every file against this schema before it runs
anything, and refuses a key it does not know or a `depends_on` condition it does not have.
No Docker engine or Compose client is needed here: the schema is vendored beside this file
(compose-spec.json, see compose-spec.NOTICE for its source and licence) and checked with
`jsonschema`. tests/deploy/test_deploy.py keeps the checks that
need `docker compose config` itself.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import jsonschema
import yaml

from tests.support.suite import repo_dir

compose_path = repo_dir / "docker-compose.yml"
schema_path = Path(__file__).with_name("compose-spec.json")


@cache
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    # The file declares draft-07 by a URL jsonschema does not recognise (no trailing "#"),
    # so the class is named rather than looked up from "$schema".
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def compose_file() -> dict:
    return yaml.safe_load(compose_path.read_text(encoding="utf-8"))


def schema_errors(document: dict) -> list[str]:
    """Each error as `path: message`, the path as compose would name the key."""
    errors = sorted(validator().iter_errors(document), key=lambda error: list(map(str, error.absolute_path)))
    return [f"{'.'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}" for error in errors]


def test_the_compose_file_follows_the_compose_specification():
    """Every key, value and profile of docker-compose.yml is one the Compose schema allows."""
    assert schema_errors(compose_file()) == []


def test_a_misspelled_key_under_a_service_is_refused():
    """`helthcheck:` under litellm: compose v2 stops on an additional property, and so does this check."""
    document = compose_file()
    litellm = document["services"]["litellm"]
    litellm["helthcheck"] = litellm.pop("healthcheck")
    errors = schema_errors(document)
    assert len(errors) == 1 and errors[0].startswith("services.litellm:") and "'helthcheck'" in errors[0], errors


def test_a_depends_on_condition_compose_does_not_have_is_refused():
    """`condition: service_ready` (compose has service_started, service_healthy and
    service_completed_successfully) is refused."""
    document = compose_file()
    document["services"]["litellm"]["depends_on"]["postgres"]["condition"] = "service_ready"
    errors = schema_errors(document)
    assert len(errors) == 1 and errors[0].startswith("services.litellm.depends_on:"), errors


def test_a_top_level_key_compose_does_not_know_is_refused():
    """A section compose does not have (`service:` for `services:`) is refused; `x-` extensions are not."""
    document = compose_file()
    document["service"] = {}
    document["x-solaris"] = {"note": "extensions are allowed"}
    errors = schema_errors(document)
    assert len(errors) == 1 and errors[0].startswith("(top):") and "'service'" in errors[0], errors
