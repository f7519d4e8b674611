"""Passages and their ranking without a model server: cut whole (no sentence in two), the
right page found for questions in other words within the budget, passages in the
documents' text order, and the pages sent listed."""

import pytest

from bench.retrieval_corpus import bench_document
from conversations.documents import ranking, retrieval
from conversations.documents.passages import page_passages, sentences
from conversations.documents.reading import count_tokens
from conversations.models import Document, DocumentPage

pytestmark = pytest.mark.django_db


def unsaved(name: str, pages: list[str], pk: int = 1) -> Document:
    """A document as documents_with_pages returns it, with no row or file behind it."""
    document = Document(pk=pk, name=name, mime="application/pdf")
    document.page_list = [
        DocumentPage(number=n, text=t, tokens=count_tokens(t)) for n, t in enumerate(pages, 1)
    ]
    return document


def squashed(text: str) -> str:
    return " ".join(text.split())


def test_passages_keep_every_sentence_whole():
    long_paragraph = " ".join(
        f"Sentence {i} says the valve on line {i} is checked e.g. weekly by Dr. Smith."
        for i in range(60)
    )
    page = f"Intro paragraph.\n\n{long_paragraph}\n\nA closing paragraph of its own."
    passages = page_passages(page, words=50)
    assert len(passages) > 5
    for sentence in sentences(long_paragraph):
        assert sum(sentence in p for p in passages) == 1
    assert squashed(" ".join(passages)) == squashed(page)


def test_no_planted_fact_is_cut_at_a_passage_boundary():
    doc = bench_document("guide.pdf", 60, 430, seed=11)
    document = unsaved(doc.name, doc.pages)
    passages = [squashed(p.text) for p in ranking.passages_of(document)]
    for fact in doc.facts:
        assert any(fact.sentence in p for p in passages), fact.sentence


def test_questions_in_other_words_find_the_right_page_within_the_budget():
    doc = bench_document("guide.pdf", 120, 430, seed=12)
    document = unsaved(doc.name, doc.pages)
    budget = retrieval.context_budget(32_768)  # the smallest Mistral window
    assert retrieval.choose_mode([document], budget)[0] == retrieval.RETRIEVAL
    for fact in doc.facts:
        for question in (fact.other_words, fact.verbatim):
            ranked = ranking.bm25_rank([document], question)
            plan = retrieval.plan_retrieval([document], budget, question, ranked, "BM25")
            assert plan.tokens <= budget
            assert fact.page in {p.page for p in plan.passages}, question
            assert fact.sentence in squashed(plan.text)


def test_passages_go_in_text_order_with_one_marker_per_run_of_a_page():
    pages = [
        "First part of page one.\n\nSecond part of page one.",
        "Page two alone.",
        "Page three, first.\n\nPage three, second.",
    ]
    document = unsaved("notes.pdf", pages)
    passages = ranking.passages_of(document)
    ranked = list(reversed(passages))  # worst order: last passage first
    plan = retrieval.plan_retrieval([document], 10_000, "", ranked, "BM25")

    text = plan.text
    assert [p.position for p in plan.passages] == sorted(p.position for p in passages)
    assert text.index("First part of page one.") < text.index("Second part of page one.")
    assert text.index("Second part of page one.") < text.index("Page two alone.")
    assert text.index("Page two alone.") < text.index("Page three, first.")
    assert text.count('[Document "notes.pdf", page 1]') == 1


def test_passages_fill_the_budget_not_a_fixed_number():
    doc = bench_document("guide.pdf", 60, 430, seed=13)
    document = unsaved(doc.name, doc.pages)
    ranked = ranking.bm25_rank([document], doc.facts[0].other_words)
    small = retrieval.plan_retrieval([document], 4_000, "", ranked, "BM25")
    large = retrieval.plan_retrieval([document], 16_000, "", ranked, "BM25")
    assert 8 < len(small.passages) < len(large.passages)
    assert 0.9 * 16_000 < large.tokens <= 16_000


def test_pages_sent_are_listed_as_ranges():
    document = unsaved("m.pdf", [f"Page {n} text." for n in range(1, 41)])
    passages = [p for p in ranking.passages_of(document) if p.page in {3, 4, 5, 9, 37}]
    assert retrieval.pages_sent(passages) == "p. 3-5, 9, 37 of m.pdf"
    assert retrieval.pages_sent(passages, most=2) == "p. 3-5, 9 and 1 more page of m.pdf"


def test_question_sharing_no_word_with_the_text_still_gets_the_document_end_to_end():
    doc = bench_document("guide.pdf", 60, 430, seed=14)
    document = unsaved(doc.name, doc.pages)
    question = "Summarise it."
    ranked = ranking.bm25_rank([document], question)
    plan = retrieval.plan_retrieval([document], 8_000, question, ranked, "BM25")
    pages = [p.page for p in plan.passages]
    assert ranked == [] and len(pages) > 20
    assert min(pages) <= 3 and max(pages) >= 57  # from the beginning to the end
    assert plan.tokens > 0.9 * 8_000
