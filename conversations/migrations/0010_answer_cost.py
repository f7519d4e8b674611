"""Message.cost_usd: what an answer's call cost, kept on its row so every frame and page
shows it without a join. Filled from the answers' ApiCall rows; a $0 call of a model with
no price (recorded at $0, never guessed) becomes None, shown as nothing rather than "free"."""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery, Sum


def costs_from_calls(apps, schema_editor):
    Message = apps.get_model("conversations", "Message")
    ApiCall = apps.get_model("conversations", "ApiCall")
    ModelPrice = apps.get_model("conversations", "ModelPrice")
    calls = (
        ApiCall.objects.filter(message=OuterRef("pk"), kind="chat")
        .values("message")
        .annotate(total=Sum("cost_usd"))
        .values("total")
    )
    Message.objects.filter(role="assistant").update(cost_usd=Subquery(calls))
    priced = list(ModelPrice.objects.values_list("model", flat=True))
    zero = Message.objects.filter(cost_usd=0).exclude(model__startswith="local/")
    for model in set(zero.values_list("model", flat=True)):
        if not any(model == row or model.startswith(row + "-") for row in priced):
            zero.filter(model=model).update(cost_usd=None)


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0009_invites_signup_requests"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="cost_usd",
            field=models.DecimalField(blank=True, decimal_places=8, max_digits=14, null=True),
        ),
        migrations.RunPython(costs_from_calls, migrations.RunPython.noop),
    ]
