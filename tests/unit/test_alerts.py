"""Usage alert e-mails rendered in both locales, and SMTP settings read from the environment.

Raising alerts in the ledger and delivering them: tests/integration/test_alerts.py."""

from __future__ import annotations

import pytest

from solaris_hooks.mail import emails
from solaris_hooks.mail.smtp import smtp_settings_from_env
from tests.support.alerts import alert, alert_settings, smtp_for


class TestEmails:
    @pytest.mark.parametrize(
        ("locale", "words"), [("pt-BR", "Você já usou 812 dos 1000"), ("en", "You have used 812 of the 1000")]
    )
    def test_both_locales_render_with_the_numbers(self, locale, words):
        """pt-BR and English: subject, text and HTML parts carry the usage."""
        subject, text, html = emails.render(alert(locale=locale), alert_settings())
        assert "80%" in subject and "IA SOLARIS" in subject
        assert words in text and "188" in text
        assert "<strong>812</strong>" in html and "<strong>188</strong>" in html

    def test_html_in_a_users_name_is_escaped(self):
        """A name with markup shows as text in the HTML part, never as markup."""
        _, text, html = emails.render(alert(name='<script>alert("x")</script>'), alert_settings())
        assert "<script>" not in html
        assert "&lt;script&gt;" in html
        assert '<script>alert("x")</script>' in text  # plain text needs no escaping

    def test_the_renewal_date_is_given_when_a_refill_is_set(self):
        """With a monthly refill the e-mail says when the allowance renews, as dd/mm/yyyy in pt-BR."""
        from solaris_hooks.settings.refill import RefillSettings, next_refill_at

        refill = RefillSettings(every="month", amount=1000)
        _, text, html = emails.render(alert(), alert_settings(refill=refill))
        expected = next_refill_at(refill).strftime("%d/%m/%Y")
        assert f"Sua cota será renovada em {expected}." in text and expected in html
        _, text, _ = emails.render(alert(), alert_settings())
        assert "renovada" not in text

    def test_a_group_members_renewal_date_is_their_groups(self):
        """A group with a refill rule of its own (weekly here, monthly at the top level)."""
        from solaris_hooks.settings.refill import RefillSettings, next_refill_at

        weekly = RefillSettings(every="week", amount=300)
        settings = alert_settings(
            refill=RefillSettings(every="month", amount=1000), groups={"students": {"refill": weekly}}
        )
        _, text, _ = emails.render(alert(group_name="students"), settings)
        assert f"Sua cota será renovada em {next_refill_at(weekly).strftime('%d/%m/%Y')}." in text
        _, text, _ = emails.render(alert(group_name=None), settings)
        assert f"Sua cota será renovada em {next_refill_at(settings.refill).strftime('%d/%m/%Y')}." in text

    def test_the_brand_name_is_a_setting(self):
        """brand_name changes subject and body."""
        subject, text, _ = emails.render(alert(), alert_settings(brand_name="Acme IA"))
        assert subject.startswith("Acme IA:") and "Acme IA" in text

    def test_the_recipient_is_the_stored_email_else_the_identity(self):
        """Stored e-mail first; an e-mail-shaped identity next; otherwise nobody."""
        assert emails.recipient(alert(email="ana.work@example.com")) == "ana.work@example.com"
        assert emails.recipient(alert()) == "ana@example.com"
        assert emails.recipient(alert(user_id="65f0c0ffee65f0c0ffee65f0")) is None
        assert emails.recipient(alert(user_id="a@b.c\r\nBcc: x@y.z")) is None

    def test_the_message_id_is_stable_per_alert(self):
        """Composing the same alert twice gives the same Message-ID; another alert, another one."""
        smtp = smtp_for(25)
        first = emails.compose(alert(), alert_settings(), smtp)["Message-ID"]
        assert first == emails.compose(alert(attempts=3), alert_settings(), smtp)["Message-ID"]
        assert first != emails.compose(alert(id=42), alert_settings(), smtp)["Message-ID"]
        assert first.endswith("@solaris.example>")


class TestSmtpSettings:
    def test_no_smtp_host_means_mail_is_off(self):
        """Without SMTP_HOST there are no SMTP settings: alerts wait in the outbox."""
        assert smtp_settings_from_env({}) is None

    def test_the_environment_sets_everything(self):
        """SMTP_* and ADMIN_EMAILS are read, with the port defaulting by security."""
        smtp = smtp_settings_from_env(
            {
                "SMTP_HOST": "mail.example.com",
                "SMTP_SECURITY": "starttls",
                "SMTP_USERNAME": "u",
                "SMTP_PASSWORD": "p",
                "SMTP_FROM": "q@example.com",
                "ADMIN_EMAILS": "a@example.com, b@example.com",
            }
        )
        assert (smtp.port, smtp.security, smtp.from_address) == (587, "starttls", "q@example.com")
        assert smtp.admin_emails == ("a@example.com", "b@example.com")

    def test_a_bad_value_names_the_variable(self):
        """SMTP_PORT=abc is reported as SMTP_PORT."""
        from solaris_hooks.exceptions import SettingsError

        with pytest.raises(SettingsError, match="SMTP_PORT"):
            smtp_settings_from_env({"SMTP_HOST": "h", "SMTP_PORT": "abc"})
        with pytest.raises(SettingsError, match="SMTP_SECURITY"):
            smtp_settings_from_env({"SMTP_HOST": "h", "SMTP_SECURITY": "tls13"})


class TestRecipientAddresses:
    @pytest.mark.parametrize(
        "address", ["ana@example.com", "marić@example.com", "ana@corp.local", "ops@mail.test", "a.b+c@sub.example.org"]
    )
    def test_an_address_on_a_public_or_an_intranet_domain_gets_mail(self, address):
        """Intranets keep mail on names the public DNS reserves (corp.local): still an address."""
        assert emails.is_email_address(address)

    @pytest.mark.parametrize(
        "text",
        ["", None, "ana", "ana@", "@example.com", "a..b@example.com", "Ana <ana@example.com>", "a@b", "a@b c.com"],
    )
    def test_anything_but_one_bare_address_gets_none(self, text):
        assert not emails.is_email_address(text)
