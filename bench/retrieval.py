"""Does retrieval send the page that answers? The retrieval benchmark (issue #23).

    .venv/bin/python -m bench.retrieval            # no key: what a new user gets
    .venv/bin/python -m bench.retrieval --key      # also: embeddings against a fake server
    .venv/bin/python -m bench.retrieval --passages 8 --k1 1.5 --b 0.75   # compare rankings

Three long documents with 30 facts each at known pages (bench/retrieval_corpus.py), each
stored as a ready Document on a throwaway DATA_DIR and asked every question alone, as the
site plans a request for a 128k-token model (the documents' share of its window is the
budget). Reported per document and in all:

- right page: the fact's page among the passages sent, for questions in other words and in
  the fact's words; whole fact: the fact's sentence sent in one piece;
- cut facts: facts that no single passage holds whole;
- passages sent and the share of the budget they use;
- the time retrieval adds to a question (rows already read; median and worst), and what
  reading a document costs at ingestion when an index is built then.

With --key, the fake Mistral server (tests/fake_mistral.py, instant) answers embeddings:
the calls and seconds of the first and second question on the 400-page document, and the
embeddings calls made over five questions while the server refuses the embeddings model.
Results go to stdout; figures are recorded by hand in docs/performance.md ("Retrieval").
"""

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time

WINDOW = 131_072  # mistral-small-latest's and mistral-large-latest's context window
_MARKER = re.compile(r'\[Document "([^"]*)", page (\d+)\]')


def _squash(text: str) -> str:
    return " ".join(text.split())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", action="store_true", help="also measure embeddings calls")
    parser.add_argument("--k1", type=float, default=None, help="BM25 k1 to try")
    parser.add_argument("--b", type=float, default=None, help="BM25 b to try")
    parser.add_argument(
        "--passages", type=int, default=None, help="send at most this many (to compare rankings)"
    )
    args = parser.parse_args(argv)

    data_dir = tempfile.mkdtemp(prefix="retrieval-bench-")
    os.environ.update(
        DATA_DIR=data_dir,
        DJANGO_SETTINGS_MODULE="chatsite.settings",
        ALLOWED_HOSTS="testserver",
        LOG_LEVEL="ERROR",
        MISTRAL_API_KEY="",
    )
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from bench.retrieval_corpus import bench_documents

    call_command("migrate", verbosity=0)
    from conversations.documents import ranking

    if args.k1 is not None:
        ranking.BM25_K1 = args.k1
    if args.b is not None:
        ranking.BM25_B = args.b
    if args.passages is not None:
        settings.CHAT_RETRIEVAL_CHUNKS = args.passages
    user = _user()
    corpus = bench_documents()
    stored = []
    for doc in corpus:
        started = time.perf_counter()
        document = _store(user, doc)
        stored.append((doc, document, time.perf_counter() - started))
    budget = int(WINDOW * settings.CHAT_DOCUMENT_CONTEXT_SHARE)
    print(f"budget: {budget:,} tokens (share {settings.CHAT_DOCUMENT_CONTEXT_SHARE} of {WINDOW:,})")
    totals = {"other": 0, "verbatim": 0, "whole": 0, "cut": 0, "facts": 0}
    for doc, document, ingest in stored:
        totals_doc = asyncio.run(_measure(doc, document, budget, user.pk, ingest))
        for key in totals:
            totals[key] += totals_doc[key]
    n = totals["facts"]
    print(
        f"ALL: right page, other words {totals['other']}/{n} ({totals['other'] / n:.0%}); "
        f"fact's words {totals['verbatim']}/{n} ({totals['verbatim'] / n:.0%}); whole fact "
        f"sent (other words) {totals['whole']}/{n}; cut facts {totals['cut']}/{n}"
    )
    if args.key:
        asyncio.run(_with_key(corpus[0], stored[0][1], budget, user.pk))
    return 0


def _user(name: str = "bench"):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username=name)


def _store(user, doc):
    """The document as ingestion leaves it: file, pages with their tokens, ready (and its
    retrieval index, where the code builds one at ingestion)."""
    from django.core.files.base import ContentFile

    from conversations.documents import ingest
    from conversations.documents.reading import PageText
    from conversations.models import Document, DocumentPage

    text = "\n\n".join(doc.pages)
    document = Document.objects.create(
        owner=user,
        name=doc.name,
        file=ContentFile(text.encode(), name="bench.md"),
        mime="text/markdown",
        size=len(text),
        page_count=len(doc.pages),
        status=Document.Status.INGESTING,
        attempts=1,
    )
    pages = [PageText(n, t, DocumentPage.Source.TEXT_LAYER) for n, t in enumerate(doc.pages, 1)]
    if hasattr(ingest, "document_retrieval_prepare"):
        document.page_list = pages
        ingest.document_retrieval_prepare(document)
    return ingest.document_pages_store(document_id=document.pk, pages=pages, attempt=1)


def _loaded(document):
    from conversations.selectors import documents_with_pages

    return documents_with_pages(document_ids=[document.pk])


async def _plan(documents, question: str, budget: int, user_id: int):
    from conversations.documents import ranking, retrieval

    if hasattr(retrieval, "documents_plan"):
        return await retrieval.documents_plan(
            documents=documents,
            question=question,
            budget=budget,
            user_id=user_id,
            conversation_id=None,
        )
    # main before #23: every passage cut and ranked for every question
    chunks = ranking.chunks_of(documents)
    ranked, retriever = await ranking.rank(chunks, question, user_id, None)
    return await asyncio.to_thread(
        retrieval.plan_retrieval, documents, budget, question, ranked, retriever
    )


def _passages(documents) -> list[str]:
    from conversations.documents import ranking

    if hasattr(ranking, "passages_of"):
        return [p.text for d in documents for p in ranking.passages_of(d)]
    return [c.text for c in ranking.chunks_of(documents)]


async def _measure(doc, document, budget: int, user_id: int, ingest: float) -> dict:
    from channels.db import database_sync_to_async

    documents = await database_sync_to_async(_loaded)(document)
    passages = [_squash(p) for p in _passages(documents)]
    cut = sum(1 for f in doc.facts if not any(f.sentence in p for p in passages))
    other = verbatim = whole = 0
    times = []
    sent_counts = []
    used = []
    misses = []
    for fact in doc.facts:
        for question, kind in ((fact.other_words, "other"), (fact.verbatim, "verbatim")):
            started = time.perf_counter()
            plan = await _plan(documents, question, budget, user_id)
            times.append((time.perf_counter() - started) * 1000)
            pages = {int(p) for _, p in _MARKER.findall(plan.text)}
            sent_counts.append(len(_MARKER.findall(plan.text)))
            used.append(plan.tokens / budget)
            hit = fact.page in pages
            if kind == "other":
                other += hit
                whole += fact.sentence in _squash(plan.text)
                if not hit:
                    misses.append(fact.other_words)
            else:
                verbatim += hit
    n = len(doc.facts)
    times.sort()
    cold = ""
    from conversations.documents import ranking

    if hasattr(ranking, "process_state_reset"):
        ranking.process_state_reset()  # as a new process: the index is read from its file
        started = time.perf_counter()
        await _plan(documents, doc.facts[0].other_words, budget, user_id)
        cold = f"; in a new process {(time.perf_counter() - started) * 1000:.1f} ms"
    print(
        f"{doc.name}: {len(doc.pages)} pages, {document.tokens:,} tokens "
        f"({document.tokens / budget:.1f}x the budget); stored in {ingest:.2f} s"
    )
    print(
        f"  right page: other words {other}/{n}, fact's words {verbatim}/{n}; whole fact "
        f"{whole}/{n}; cut facts {cut}/{n} ({len(passages)} passages)"
    )
    print(
        f"  sent: {statistics.median(sent_counts):.0f} passages, "
        f"{statistics.median(used):.0%} of the budget; retrieval per question: median "
        f"{statistics.median(times):.1f} ms, worst {times[-1]:.1f} ms, best {times[0]:.1f} ms{cold}"
    )
    for question in misses[:5]:
        print(f"    missed: {question}")
    return {"other": other, "verbatim": verbatim, "whole": whole, "cut": cut, "facts": n}


async def _with_key(corpus_document, stored_before, budget: int, user_id: int) -> None:
    """Embeddings against the fake server: a document read with a key (embedded at
    ingestion), one read before a key was set (embedded by its first question), a refused
    model."""
    from channels.db import database_sync_to_async
    from django.conf import settings

    from tests.fake_mistral import FakeMistral, Reply

    with FakeMistral() as server:
        server.api_key = "bench-key"
        settings.MISTRAL_BASE_URL = server.base_url
        settings.MISTRAL_API_KEY = "bench-key"
        cases = [("read without a key", stored_before)]
        started = time.perf_counter()
        # As the job worker reads it: in a thread of its own, outside any event loop.
        owner = await asyncio.to_thread(_user, "bench-key")
        document = await asyncio.to_thread(_store, owner, corpus_document)
        calls = [r for r in server.requests if r.path == "/v1/embeddings"]
        print(
            f"with a key, reading the 400-page document: {len(calls)} embeddings calls, "
            f"{time.perf_counter() - started:.2f} s in all"
        )
        cases.insert(0, ("read with a key", document))
        for label, row in cases:
            documents = await database_sync_to_async(_loaded)(row)
            for which in ("first", "second"):
                before = len(server.requests)
                started = time.perf_counter()
                plan = await _plan(
                    documents, "When did the pump house first go into service?", budget, user_id
                )
                elapsed = time.perf_counter() - started
                calls = [r for r in server.requests[before:] if r.path == "/v1/embeddings"]
                print(
                    f"  {label}, {which} question: {len(calls)} embeddings calls, "
                    f"{elapsed:.2f} s ({plan.retriever})"
                )
        server.embeddings_error = Reply.invalid_model("mistral-embed")
        _forget()
        before = len(server.requests)
        for _ in range(5):
            plan = await _plan(documents, "Who drew up the plans?", budget, user_id)
        calls = [r for r in server.requests[before:] if r.path == "/v1/embeddings"]
        print(f"embeddings model refused: {len(calls)} calls over 5 questions ({plan.retriever})")


def _forget() -> None:
    """Forget vectors in memory (and, before #23, on nothing else), so the refused model is
    asked again."""
    from conversations.documents import ranking

    for name in ("embedding_cache", "_vectors"):
        cache = getattr(ranking, name, None)
        if cache is not None:
            cache._items.clear()
    if hasattr(ranking, "_vectors_read"):
        ranking._vectors_read = lambda document, model: None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
