"""The plain-SQL helpers give exactly what the ORM gives: same values, same types."""

from decimal import Decimal

import pytest

from conversations import plain_sql
from conversations.models import ApiCall, Conversation

pytestmark = pytest.mark.django_db


def fields_of(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def test_read_models_matches_the_orm_field_for_field(user):
    Conversation.objects.create(owner=user, model="m", temperature=0.3, safe_prompt=True)
    skipped = Conversation.objects.create(owner=user, model="other", title="Skip me")
    found = plain_sql.read_models(
        Conversation, where="t.owner_id = %s AND t.id <> %s", params=[user.pk, skipped.pk]
    )
    assert len(found) == 1
    conversation, extra = found[0]
    ours = Conversation.objects.exclude(pk=skipped.pk).get()
    assert extra == ()
    assert fields_of(conversation) == fields_of(ours)
    assert {k: type(v) for k, v in fields_of(conversation).items()} == {
        k: type(v) for k, v in fields_of(ours).items()
    }
    assert conversation.created_at.tzinfo is not None
    assert not conversation._state.adding


def test_insert_stores_what_save_would(user):
    call = plain_sql.insert(
        ApiCall(
            kind="chat",
            model="mistral-small-latest",
            user_id=user.pk,
            prompt_tokens=12,
            cost_usd=Decimal("0.00012345"),
            status="complete",
            request={"messages": [{"role": "user", "parts": [{"type": "text", "chars": 5}]}]},
        )
    )
    stored = ApiCall.objects.get(pk=call.pk)
    assert fields_of(stored) == fields_of(call)
    assert stored.cost_usd == Decimal("0.00012345")
    assert stored.request["messages"][0]["parts"][0]["chars"] == 5
    assert stored.provider == "mistral"  # the field's default
    assert stored.created_at is not None and stored.created_at.tzinfo is not None


def test_update_changes_the_named_fields_of_one_row(user):
    changed = Conversation.objects.create(owner=user, model="before", title="Kept")
    other = Conversation.objects.create(owner=user, model="before")
    assert plain_sql.update(Conversation, changed.pk, model="after", temperature=0.5) == 1
    assert plain_sql.update(Conversation, 999_999, model="after") == 0
    changed.refresh_from_db()
    other.refresh_from_db()
    assert (changed.model, changed.temperature, changed.title) == ("after", 0.5, "Kept")
    assert other.model == "before"


def test_insert_many_stores_every_row_and_gives_each_its_key(user):
    conversations = [Conversation(owner=user, model=f"m{i}", title=f"T{i}") for i in range(3)]
    plain_sql.insert_many(conversations)
    keys = [c.pk for c in conversations]
    assert keys == sorted(keys) and len(set(keys)) == 3
    for conversation in conversations:
        stored = Conversation.objects.get(pk=conversation.pk)
        assert fields_of(stored) == fields_of(conversation)
        assert not conversation._state.adding


def test_update_many_changes_only_the_rows_named(user):
    a, b, c = (Conversation.objects.create(owner=user, model="before") for _ in range(3))
    assert plain_sql.update_many(Conversation, [a.pk, c.pk, 999_999], model="after") == 2
    assert dict(Conversation.objects.values_list("pk", "model")) == {
        a.pk: "after",
        b.pk: "before",
        c.pk: "after",
    }


def test_insert_converts_values_that_are_not_of_the_fields_own_type(user):
    """Plain strings and integers go as they are; anything else through Django's own
    conversion, as `save()` would."""
    from django.utils.translation import gettext_lazy

    conversation = plain_sql.insert(
        Conversation(owner_id=str(user.pk), model=gettext_lazy("lazy"), max_tokens="12")
    )
    stored = Conversation.objects.get(pk=conversation.pk)
    assert (stored.owner_id, stored.model, stored.max_tokens) == (user.pk, "lazy", 12)


def test_insert_many_stamps_the_rows_of_one_statement_with_one_time(user):
    from django.utils import timezone

    before = timezone.now()
    conversations = [Conversation(owner=user, model="m") for _ in range(3)]
    plain_sql.insert_many(conversations)
    for field in ("created_at", "updated_at"):
        [stamp] = {getattr(c, field) for c in conversations}
        assert before <= stamp <= timezone.now()
        assert set(Conversation.objects.values_list(field, flat=True)) == {stamp}
