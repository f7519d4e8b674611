"""What the review panel reads: the queue of conversations with their counts and costs, and
a conversation's transcript with every branch. Reads only, through the domain's rows; the
admin (admin.py) shows them."""

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import (
    Case,
    Count,
    DecimalField,
    Exists,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from conversations.models import ApiCall, Conversation, Document, Message, Report, ToolCall
from conversations.selectors import message_history
from conversations.tree import Tree, shown_leaf


def review_queue() -> QuerySet[Conversation]:
    """Every conversation with what the review list shows: message count, tokens, cost and
    whether an answer was reported, each a subquery of the one SELECT, so a page costs the
    same few queries whatever its size. Reported conversations not yet reviewed come first
    (`review_priority` 0), then the most recently active."""
    per_conversation = {"conversation": OuterRef("pk")}
    calls = ApiCall.objects.filter(**per_conversation).order_by().values("conversation")
    count = (
        Message.objects.filter(**per_conversation)
        .order_by()
        .values("conversation")
        .annotate(n=Count("id"))
        .values("n")
    )
    tokens = calls.annotate(t=Sum("prompt_tokens") + Sum("completion_tokens")).values("t")
    cost = calls.annotate(c=Sum("cost_usd")).values("c")
    money = DecimalField(max_digits=14, decimal_places=8)
    return Conversation.objects.select_related("owner").annotate(
        message_count=Coalesce(Subquery(count, output_field=IntegerField()), 0),
        tokens=Coalesce(Subquery(tokens, output_field=IntegerField()), 0),
        cost=Coalesce(Subquery(cost, output_field=money), Value(Decimal(0)), output_field=money),
        reported=Exists(Report.objects.filter(message__conversation=OuterRef("pk"))),
        review_priority=review_priority(),
    )


def review_priority() -> Case:
    """0 for a conversation with a reported answer and a review not finished, else 1: an
    expression, so the admin can order by it even where review_queue() was not used."""
    return Case(
        When(
            Exists(Report.objects.filter(message__conversation=OuterRef("pk")))
            & ~Q(review_status=Conversation.ReviewStatus.REVIEWED),
            then=Value(0),
        ),
        default=Value(1),
        output_field=IntegerField(),
    )


@dataclass(frozen=True, slots=True)
class ReviewBranch:
    """One line of a transcript for reviewers: the branch shown to the user (`number` 1), or
    another, from its first message on; `fork` is the message it follows (None: it starts
    the conversation), on a line before it."""

    number: int
    messages: list[Message]
    fork: int | None

    @property
    def shown(self) -> bool:
        return self.number == 1


@dataclass(frozen=True, slots=True)
class ReviewTranscript:
    branches: list[ReviewBranch]  # the shown branch first: every message, each once

    @property
    def messages(self) -> list[Message]:
        return [message for branch in self.branches for message in branch.messages]


def review_transcript(*, conversation: Conversation) -> ReviewTranscript:
    """A conversation's messages for a reviewer, every branch of its tree: the one the user
    was shown last, then the others (Tree.branches). Each message has its images, its
    documents (`review_documents`), its reports (`review_reports`), the API calls that
    produced it (`review_calls`), whether it is on the shown branch (`review_shown`) and,
    when it has alternatives, which version it is (`review_version`, `review_versions`) and
    where the others are (`review_others`: (version, branch number, id)), and an answer
    that called tools its tool calls (`tool_call_list`). Six queries whatever its length or
    number of branches: the tree comes from the messages read."""
    conversation_id = conversation.pk
    messages = message_history(conversation_id=conversation_id)
    reports: defaultdict[int, list[Report]] = defaultdict(list)
    for report in Report.objects.filter(message__conversation_id=conversation_id).select_related(
        "user"
    ):
        reports[report.message_id].append(report)
    calls: defaultdict[int, list[ApiCall]] = defaultdict(list)
    for call in ApiCall.objects.filter(message__conversation_id=conversation_id).order_by("id"):
        calls[call.message_id].append(call)
    documents: defaultdict[int, list[Document]] = defaultdict(list)
    for document in Document.objects.filter(message__conversation_id=conversation_id).order_by(
        "message_id", "position", "id"
    ):
        documents[document.message_id].append(document)
    tools: defaultdict[int, list[ToolCall]] = defaultdict(list)
    for tool_call in ToolCall.objects.filter(message__conversation_id=conversation_id).order_by(
        "message_id", "step", "position"
    ):
        tools[tool_call.message_id].append(tool_call)
    by_id = {message.pk: message for message in messages}
    tree = Tree.of([(message.pk, message.parent_id) for message in messages])
    lines = tree.branches(shown_leaf(tree, conversation.shown_leaf_id))
    branch_of = {pk: number for number, line in enumerate(lines, 1) for pk in line}
    for message in messages:
        siblings = tree.siblings(message.pk)
        message.review_documents = documents.get(message.pk, [])
        message.review_reports = reports.get(message.pk, [])
        message.review_calls = calls.get(message.pk, [])
        message.tool_call_list = tools.get(message.pk, [])
        message.review_shown = branch_of[message.pk] == 1
        message.review_versions = len(siblings)
        message.review_version = siblings.index(message.pk) + 1
        message.review_others = [
            (version, branch_of[pk], pk)
            for version, pk in enumerate(siblings, 1)
            if pk != message.pk
        ]
    return ReviewTranscript(
        [
            ReviewBranch(number, [by_id[pk] for pk in line], tree.parents[line[0]])
            for number, line in enumerate(lines, 1)
        ]
    )
