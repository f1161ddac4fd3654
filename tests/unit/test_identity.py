"""Who pays for a call: one spelling per person, named in LiteLLM's order, only by keys allowed to."""

from __future__ import annotations

import base64
import hashlib
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solaris_hooks.exceptions import IdentityForbidden, IdentityRefused
from solaris_hooks.quota.identity import (
    identity_length_max,
    key_may_name_users,
    master_key_token,
    named_identity,
    normalise_identity,
    resolve_identity,
)

header = "x-litellm-end-user-id"


def data(header_value: str | None = None, user: object = None, headers: dict | None = None, **body) -> dict:
    sent = dict(headers or {})
    if header_value is not None:
        sent["X-LiteLLM-End-User-Id"] = header_value
    request = {"proxy_server_request": {"headers": sent}, **body}
    if user is not None:
        request["user"] = user
    return request


class Key:
    """What the hooks read of LiteLLM's UserAPIKeyAuth."""

    def __init__(self, token: str | None = None, user_id: str | None = None, key_alias: str | None = None):
        self.token, self.user_id, self.key_alias = token, user_id, key_alias


master = Key(token=master_key_token, user_id="default_user_id")
personal = Key(token=hashlib.sha256(b"sk-bob").hexdigest(), user_id="bob@example.com")


def resolve(request: dict, key: Key = master, **rules) -> str:
    options = {
        "header_name": header,
        "local_part_case": "insensitive",
        "anonymous_calls": "refuse",
        "trusted_keys": None,
        **rules,
    }
    return resolve_identity(request, key, **options)


class TestNormaliseIdentity:
    @pytest.mark.parametrize(
        "spelling",
        [
            "Ana@Example.COM",
            "ANA@EXAMPLE.COM",
            " ana@example.com\u3000",  # an ideographic space trails
            "\uff41\uff4e\uff41\uff20\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d",  # fullwidth
            "\uff21\uff4e\uff41@example.com",
        ],
    )
    def test_spellings_of_one_address_are_one_identity(self, spelling):
        """Case, fullwidth forms and surrounding spaces do not make a second account."""
        assert normalise_identity(spelling, "insensitive") == "ana@example.com"

    def test_combining_and_precomposed_accents_are_one_identity(self):
        """'joa\\u0303o' (a combining tilde) and 'jo\\u00e3o' look the same and are one account."""
        assert (
            normalise_identity("Joa\u0303o@Example.com", "insensitive")
            == normalise_identity("jo\u00e3o@example.com", "insensitive")
            == "jo\u00e3o@example.com"
        )

    def test_compatibility_forms_become_their_plain_letters(self):
        """A ligature, a superscript or a circled letter is the plain text it stands for."""
        assert normalise_identity("\ufb01nn\u00b2@\u24d4xample.com", "insensitive") == "finn2@example.com"

    def test_the_domain_is_lower_cased_even_when_the_local_part_is_not(self):
        """identity_local_part_case: sensitive keeps `Ana`, never `Example.COM`."""
        assert normalise_identity("Ana@Example.COM", "sensitive") == "Ana@example.com"
        assert normalise_identity("Ana@Example.COM", "sensitive") != normalise_identity("ana@example.com", "sensitive")

    @pytest.mark.parametrize(
        ("identity", "insensitive", "sensitive"),
        [
            ("65F0C0FFEE65F0C0FFEE65F0", "65f0c0ffee65f0c0ffee65f0", "65F0C0FFEE65F0C0FFEE65F0"),
            ("key:ABCdef", "key:abcdef", "key:ABCdef"),
            ("@Ana", "@ana", "@Ana"),  # nothing before the '@': not an address
            ("Ana@", "ana@", "Ana@"),
        ],
    )
    def test_an_id_that_is_not_an_address_follows_the_local_part_rule(self, identity, insensitive, sensitive):
        """One rule: all but an e-mail domain follows identity_local_part_case."""
        assert normalise_identity(identity, "insensitive") == insensitive
        assert normalise_identity(identity, "sensitive") == sensitive

    def test_sharp_s_is_lower_cased_not_case_folded(self):
        """As PRECIS user names: 'Straße' and 'strasse' stay two names (case folding would merge them)."""
        assert normalise_identity("Straße@Example.com", "insensitive") == "straße@example.com"
        assert normalise_identity("STRASSE@example.com", "insensitive") == "strasse@example.com"

    def test_only_the_last_at_sign_splits_the_domain(self):
        """'"a@b"@Example.COM': the domain is what follows the last '@'."""
        assert normalise_identity('"A@B"@Example.COM', "sensitive") == '"A@B"@example.com'

    @pytest.mark.parametrize(
        ("identity", "code"),
        [
            ("\uff5b\uff5bLIBRECHAT_USER_EMAIL\uff5d\uff5d", "identity_placeholder"),  # fullwidth braces
            ("\ufdfa" * 20, "identity_too_long"),  # 20 characters that NFKC writes out as 360
            ("a" * 2000, "identity_too_long"),
            ("\u3000 ", "identity_missing"),
            ("ana\u200b@example.com", "identity_invalid"),
        ],
    )
    def test_what_is_no_identity_after_normalising_is_refused(self, identity, code):
        """Rules hold for the normalised form: a placeholder in fullwidth or an id NFKC lengthens."""
        with pytest.raises(IdentityRefused) as refused:
            normalise_identity(identity, "insensitive")
        assert refused.value.message_key == code

    @given(st.text(max_size=40), st.sampled_from(["insensitive", "sensitive"]))
    @settings(max_examples=2000, deadline=None)
    def test_normalising_twice_changes_nothing(self, identity, case):
        """A normalised identity is its own normal form, so lookups and calls always agree."""
        try:
            once = normalise_identity(identity, case)
        except IdentityRefused:
            return
        assert normalise_identity(once, case) == once
        assert unicodedata.is_normalized("NFKC", once) and len(once) <= identity_length_max


class TestNamedIdentity:
    def test_litellm_headers_come_first_customer_id_before_end_user_id(self):
        """x-litellm-customer-id, then x-litellm-end-user-id, then the configured header, then the body."""
        both = {"x-litellm-customer-id": "cust", "x-litellm-end-user-id": "end", "x-librechat-user": "mine"}
        assert named_identity(data(None, "body", both), "x-librechat-user", None) == "cust"
        del both["x-litellm-customer-id"]
        assert named_identity(data(None, "body", both), "x-librechat-user", None) == "end"
        del both["x-litellm-end-user-id"]
        assert named_identity(data(None, "body", both), "x-librechat-user", None) == "mine"
        assert named_identity(data(None, "body"), "x-librechat-user", None) == "body"

    def test_metadata_fields_follow_the_body_user_in_litellms_order(self):
        """litellm_metadata.user, then metadata.user_id, then safety_identifier."""
        fields = {"litellm_metadata": {"user": "lm"}, "metadata": {"user_id": "md"}, "safety_identifier": "si"}
        assert named_identity(data(None, None, **fields), header, None) == "lm"
        del fields["litellm_metadata"]
        assert named_identity(data(None, None, **fields), header, None) == "md"
        del fields["metadata"]
        assert named_identity(data(None, None, **fields), header, None) == "si"
        assert named_identity(data(), header, None) is None

    @pytest.mark.parametrize(
        ("request_data", "code"),
        [
            (data(""), "identity_header_empty"),
            (data("   "), "identity_header_empty"),
            (data(None, None, headers={"x-litellm-customer-id": ""}), "identity_header_empty"),
            (data(None, ""), "identity_missing"),
            (data(None, None, metadata={"user_id": " "}), "identity_missing"),
        ],
    )
    def test_a_blank_source_is_refused_not_skipped(self, request_data, code):
        """A blank header or field is a misconfigured client: refused, not charged to the next source.
        A blank header is what LibreChat sends for a placeholder it cannot fill: its refusal says so."""
        with pytest.raises(IdentityRefused) as refused:
            named_identity(request_data, header, None)
        assert refused.value.message_key == code

    def test_an_empty_header_refusal_names_the_header_and_how_to_fix_librechat_yaml(self):
        """The 400 for an empty header names the header that came empty and the yaml line to write."""
        from solaris_hooks import messages

        with pytest.raises(IdentityRefused) as refused:
            named_identity(data(None, None, headers={"x-litellm-customer-id": ""}), header, None)
        for locale in messages.locales:
            text = messages.render(refused.value.message_key, locale, **refused.value.params)
            assert "x-litellm-customer-id" in text and "librechat.yaml" in text
            assert "{{LIBRECHAT_USER_EMAIL}}" in text

    @pytest.mark.parametrize("user", [["a"], 123, {"id": "a"}, True])
    def test_a_body_user_that_is_not_text_is_refused(self, user):
        """`user: 123` or a list is refused rather than coerced."""
        with pytest.raises(IdentityRefused) as refused:
            named_identity(data(None, user), header, None)
        assert refused.value.message_key == "identity_invalid"

    def test_a_user_litellm_filled_in_from_the_key_is_not_a_name(self):
        """LiteLLM's speech and transcription routes put the key's own user into `user`; the request did not."""
        request = data(None, "default_user_id")
        request["proxy_server_request"]["body"] = {"model": "tts"}
        assert named_identity(request, header, "default_user_id") is None
        request["proxy_server_request"]["body"]["user"] = "default_user_id"
        assert named_identity(request, header, "default_user_id") == "default_user_id"

    @pytest.mark.parametrize(
        "sent",
        [
            "b64:bWFyacSHQGV4YW1wbGUuY29t",  # as LibreChat sent it
            "B64:bWFyacSHQGV4YW1wbGUuY29t",
            "b64:bWFyacSHQGV4YW1wbGUuY29t ",
            "b64:" + base64.urlsafe_b64encode("marić@example.com".encode()).decode().rstrip("="),
        ],
    )
    def test_a_b64_header_is_the_utf8_text_it_encodes(self, sent):
        """LibreChat sends a header value with characters above U+00FF as `b64:` + base64 of its UTF-8."""
        assert named_identity(data(sent), header, None) == "marić@example.com"
        assert resolve(data(sent)) == "marić@example.com"

    @pytest.mark.parametrize(
        "sent",
        [
            "b64:",
            "b64:not base64!",
            "b64:" + base64.b64encode(b"\xff\xfe").decode(),  # not UTF-8
            "b64:" + base64.b64encode(b"ana\n@example.com").decode(),  # decodes to a control character
            "b64:" + base64.b64encode(b"{{LIBRECHAT_USER_EMAIL}}").decode(),
        ],
    )
    def test_a_b64_header_that_is_no_identity_is_refused_not_charged_literally(self, sent):
        """A `b64:` value is either decoded text that passes every identity check, or a 400."""
        with pytest.raises(IdentityRefused):
            resolve(data(sent))

    def test_a_b64_value_in_the_body_user_is_not_decoded(self):
        """Only headers carry LibreChat's encoding; the body's `user` is JSON, already any text."""
        assert named_identity(data(None, "b64:YW5h"), header, None) == "b64:YW5h"

    def test_utf8_header_bytes_are_read_as_utf8(self):
        """Starlette hands headers over as latin-1: 'joão' sent as UTF-8 arrives as 'joÃ£o' and is read back."""
        assert named_identity(data("joão@example.com".encode().decode("latin-1")), header, None) == "joão@example.com"


class TestKeyMayNameUsers:
    def test_unset_trusted_keys_means_the_master_key_only(self):
        """No list: the master key may name users, a personal key may not."""
        assert key_may_name_users(master_key_token, None, None)
        assert not key_may_name_users(personal.token, "bob", None)
        assert not key_may_name_users(None, None, None)

    def test_keys_are_listed_by_alias_or_raw_key(self):
        """An alias, or the raw key (compared by its sha256 as LiteLLM stores it)."""
        assert key_may_name_users("0" * 64, "librechat", ["librechat"])
        assert key_may_name_users(personal.token, None, ["sk-bob"])
        assert not key_may_name_users(personal.token, "bob", ["librechat"])

    def test_the_master_key_may_always(self):
        """Listing other keys does not take the right away from the master key; `master_key` changes nothing."""
        assert key_may_name_users(master_key_token, None, ["librechat"])
        assert key_may_name_users(master_key_token, None, ["master_key"])
        assert not key_may_name_users(personal.token, None, ["master_key"])


class TestResolveIdentity:
    def test_a_trusted_key_names_the_user_normalised(self):
        """The master key names whoever the request names, in one spelling."""
        assert resolve(data("Ana@Example.COM")) == "ana@example.com"
        assert resolve(data(None, "  ANA@example.com")) == "ana@example.com"

    def test_a_personal_key_naming_someone_else_is_forbidden(self):
        """A key outside trusted_keys cannot charge another person: 403, not served."""
        for request in (
            data("ana@example.com"),
            data(None, "ana@example.com"),
            data(None, None, headers={"x-litellm-customer-id": "ana@example.com"}),
        ):
            with pytest.raises(IdentityForbidden) as refused:
                resolve(request, personal)
            assert refused.value.status_code == 403 and refused.value.message_key == "identity_forbidden"

    def test_tracking_fields_do_not_re_attribute_a_personal_key(self):
        """Claude Code's metadata.user_id (sent with every call) and the like: a personal key still pays itself."""
        tracked = data(
            None,
            None,
            metadata={"user_id": "user_abc_account_x_session_y"},
            litellm_metadata={"user": "ana@example.com"},
            safety_identifier="hash",
        )
        assert resolve(tracked, personal) == "bob@example.com"
        assert resolve(tracked) == "ana@example.com"  # a trusted key: LiteLLM's order, as in its spend logs

    def test_a_personal_key_may_name_itself_in_any_spelling(self):
        """Naming the key's own user is no impersonation: charged to it."""
        assert resolve(data("BOB@example.COM"), personal) == "bob@example.com"

    def test_a_personal_key_naming_nobody_pays_for_itself(self):
        """Its LiteLLM user, else the key itself, whatever anonymous_calls says."""
        assert resolve(data(), personal) == "bob@example.com"
        keyless = Key(token="ABCDEF" + "0" * 58)
        assert resolve(data(), keyless) == "key:abcdef0000000000"

    def test_a_trusted_key_naming_nobody_is_refused_by_default(self):
        """No silent shared account: the master key's `default_user_id` is not charged."""
        with pytest.raises(IdentityRefused) as refused:
            resolve(data())
        assert refused.value.status_code == 400 and refused.value.message_key == "identity_missing"

    def test_charge_key_charges_a_trusted_key_naming_nobody_to_itself(self):
        """anonymous_calls: charge_key bills the key's own user (or `key:…`)."""
        assert resolve(data(), master, anonymous_calls="charge_key") == "default_user_id"
        librechat = Key(token="f" * 64, key_alias="librechat")
        assert (
            resolve(data(), librechat, anonymous_calls="charge_key", trusted_keys=["librechat"])
            == "key:ffffffffffffffff"
        )

    def test_nothing_at_all_is_refused(self):
        """No request identity and no key: refused."""
        with pytest.raises(IdentityRefused):
            resolve(data(), Key(), anonymous_calls="charge_key")
