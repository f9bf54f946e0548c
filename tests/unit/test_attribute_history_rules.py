"""Which tables keep history, which columns are attributes, which columns a file sets."""

from __future__ import annotations

from closeloop.data import history
from closeloop.data.tables import ACCOUNTS, EVENTS, PEOPLE


def test_accounts_and_people_keep_history_other_tables_do_not() -> None:
    assert history.tracks_history("accounts") and history.tracks_history("people")
    assert not history.tracks_history(EVENTS.name)
    assert not history.tracks_history("subscriptions")


def test_attributes_are_every_column_but_the_key_and_creation() -> None:
    attributes = history.attribute_columns(ACCOUNTS)
    assert "account_id" not in attributes and "created_at" not in attributes
    assert {"plan", "owner", "arr", "renewal_date", "properties"} <= set(attributes)
    assert history.attribute_columns(PEOPLE) == (
        "account_id",
        "email",
        "name",
        "role",
        "properties",
    )


def test_a_file_sets_its_own_columns_and_properties_when_it_has_extras() -> None:
    assert history.given_columns(ACCOUNTS, ["account_id", "created_at", "plan"]) == (
        "account_id",
        "created_at",
        "plan",
    )
    # The valid-from column is not an extra: it says when the values hold.
    assert history.given_columns(ACCOUNTS, ["account_id", "plan", "updated_at"]) == (
        "account_id",
        "plan",
    )
    assert history.given_columns(ACCOUNTS, ["account_id", "plan", "tier", "valid_from"]) == (
        "account_id",
        "plan",
        "properties",
    )
    assert history.given_columns(PEOPLE, ["person_id", "properties"]) == (
        "person_id",
        "properties",
    )
