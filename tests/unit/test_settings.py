"""Typed settings from the YAML block and the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from solaris_hooks.exceptions import SettingsError
from solaris_hooks.settings import Settings, load_settings, settings_from_mapping
from tests.support.suite import repo_dir


class TestSettings:
    def test_defaults_match_the_product(self):
        """No block at all: 1000 tokens per user, factor 0.376, pt-BR, fail closed."""
        settings = settings_from_mapping(None, environ={})
        assert settings.default_tokens_per_user == 1000
        assert settings.conversion_factor == 0.376
        assert settings.locale == "pt-BR"
        assert settings.fail_mode == "closed"

    def test_environment_variables_override_the_yaml(self):
        """DEFAULT_TOKENS_PER_USER, CONVERSION_FACTOR and CREDITS_EMAIL win over the file."""
        environ = {"DEFAULT_TOKENS_PER_USER": "5000", "CONVERSION_FACTOR": "0.5", "CREDITS_EMAIL": "a@b.c"}
        settings = settings_from_mapping({"default_tokens_per_user": 10, "conversion_factor": 2}, environ)
        assert (settings.default_tokens_per_user, settings.conversion_factor, settings.credits_email) == (
            5000,
            0.5,
            "a@b.c",
        )

    def test_os_environ_references_are_resolved(self):
        """A value `os.environ/NAME` reads NAME, as in LiteLLM's own config."""
        settings = settings_from_mapping({"credits_email": "os.environ/MY_MAIL"}, {"MY_MAIL": "x@y.z"})
        assert settings.credits_email == "x@y.z"

    def test_a_missing_environment_reference_names_the_key_and_variable(self):
        """An unset os.environ/NAME stops start-up with the key and the variable named."""
        with pytest.raises(SettingsError, match=r"solaris_settings\.credits_email.*NOT_SET_ANYWHERE"):
            settings_from_mapping({"credits_email": "os.environ/NOT_SET_ANYWHERE"}, {})

    @pytest.mark.parametrize(
        ("block", "key"),
        [
            ({"conversion_factor": 0}, "conversion_factor"),
            ({"conversion_factor": "abc"}, "conversion_factor"),
            ({"default_tokens_per_user": -1}, "default_tokens_per_user"),
            ({"model_factors": {"gpt-4o": -2}}, "model_factors.gpt-4o"),
            ({"fail_mode": "maybe"}, "fail_mode"),
            ({"locale": "fr"}, "locale"),
            ({"refusal_status_code": 500}, "refusal_status_code"),
            ({"reservation_ttl_s": 0}, "reservation_ttl_s"),
            ({"conversion_fator": 0.3}, "conversion_fator"),
        ],
    )
    def test_a_bad_value_is_refused_naming_its_key(self, block, key):
        """Every invalid or unknown setting is an error that names solaris_settings.<key>."""
        with pytest.raises(SettingsError, match=f"solaris_settings\\.{key}"):
            settings_from_mapping(block, {})

    def test_a_bad_environment_override_says_where_it_came_from(self):
        """CONVERSION_FACTOR=abc is reported as coming from the environment."""
        with pytest.raises(SettingsError, match=r"conversion_factor \(from CONVERSION_FACTOR\)"):
            settings_from_mapping({}, {"CONVERSION_FACTOR": "abc"})

    def test_model_factors_apply_per_model_group(self):
        """factor_for uses the model's own factor, else the default."""
        settings = Settings(model_factors={"gpt-4o": 1.0})
        assert settings.factor_for("gpt-4o") == 1.0
        assert settings.factor_for("other") == 0.376

    def test_the_block_is_read_from_the_proxy_yaml(self, tmp_path: Path):
        """load_settings reads `solaris_settings` from the config file and ignores LiteLLM's keys."""
        config = tmp_path / "litellm-config.yaml"
        config.write_text("model_list: []\nsolaris_settings:\n  default_tokens_per_user: 42\n", encoding="utf-8")
        assert load_settings(config, environ={}).default_tokens_per_user == 42

    def test_the_shipped_config_is_valid(self):
        """The repository's litellm-config.yaml passes validation, given LibreChat's key."""
        config = repo_dir / "litellm-config.yaml"
        assert load_settings(config, environ={"LIBRECHAT_API_KEY": "sk-librechat"}).conversion_factor == 0.376

    def test_the_shipped_config_trusts_librechats_raw_key_from_the_environment(self):
        """trusted_keys is LIBRECHAT_API_KEY's value, never an alias; unset, the config does not load."""
        config = repo_dir / "litellm-config.yaml"
        block = yaml.safe_load(config.read_text(encoding="utf-8"))["solaris_settings"]
        assert block["trusted_keys"] == ["os.environ/LIBRECHAT_API_KEY"]
        assert load_settings(config, environ={"LIBRECHAT_API_KEY": "sk-librechat"}).trusted_keys == ["sk-librechat"]
        with pytest.raises(SettingsError, match=r"trusted_keys\.0: environment variable LIBRECHAT_API_KEY is not set"):
            load_settings(config, environ={})


class TestTrustedKeysSetting:
    def test_listed_keys_may_come_from_the_environment(self):
        """trusted_keys entries written os.environ/NAME are read from the environment."""
        settings = settings_from_mapping(
            {"trusted_keys": ["librechat", "os.environ/LIBRECHAT_KEY"]}, {"LIBRECHAT_KEY": "sk-secret"}
        )
        assert settings.trusted_keys == ["librechat", "sk-secret"]

    def test_raw_keys_are_masked_when_settings_are_shown(self, tmp_path: Path):
        """GET /solaris/settings shows aliases and master_key, never a raw key."""
        from solaris_hooks.settings import describe_settings

        config = tmp_path / "c.yaml"
        config.write_text("solaris_settings:\n  trusted_keys: [librechat, master_key, sk-raw-1, os.environ/K]\n")
        shown = describe_settings({"SOLARIS_CONFIG": str(config), "K": "plain-secret"})["trusted_keys"]["value"]
        assert shown == ["librechat", "master_key", "********", "********"]


class TestEnvironment:
    def test_a_given_mapping_is_read_instead_of_the_process_environment(self, monkeypatch):
        """Environment.read(environ) sees only environ; Environment.read() sees os.environ."""
        from solaris_hooks.settings import Environment

        monkeypatch.setenv("SMTP_HOST", "mail.example.com")
        assert Environment.read({}).smtp_host == ""
        assert Environment.read({"SMTP_HOST": "other"}).smtp_host == "other"
        assert Environment.read().smtp_host == "mail.example.com"

    def test_names_are_exact_and_values_as_written(self):
        """SMTP_HOST, not smtp_host; blanks and spaces are kept for each reader's own rules."""
        from solaris_hooks.settings import Environment

        environment = Environment.read({"smtp_host": "lower", "SOLARIS_DATA_DIR": "", "SMTP_PORT": " 25 "})
        assert environment.smtp_host == ""
        assert environment.solaris_data_dir == ""
        assert environment.smtp_port == " 25 "
        assert Environment.read({}).solaris_data_dir == ".solaris"

    def test_secrets_never_show_in_a_repr(self):
        """Keys, passwords and database URLs are SecretStr."""
        from solaris_hooks.settings import Environment

        secrets = {
            "LITELLM_MASTER_KEY": "sk-master-secret",
            "SOLARIS_SECRET_KEY": "signing-secret",
            "SOLARIS_ADMIN_KEYS": "ana=sk-admin-secret",
            "SMTP_PASSWORD": "smtp-secret",
            "DATABASE_URL": "postgresql://u:db-secret@h/d",
        }
        shown = repr(Environment.read(secrets))
        assert not any(value in shown for value in secrets.values())

    def test_overrides_are_the_non_blank_variables_stripped(self):
        """Only overrides with more than blanks apply, stripped."""
        from solaris_hooks.settings import Environment

        environment = Environment.read({"CONVERSION_FACTOR": " 0.5 ", "CREDITS_EMAIL": "  ", "OTHER": "x"})
        assert environment.setting_overrides() == {"CONVERSION_FACTOR": "0.5"}
