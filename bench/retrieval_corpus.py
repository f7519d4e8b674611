"""The retrieval benchmark's documents and questions, made here from a seed (nothing is
downloaded): three long documents shaped like the issue's (a 400-page "PDF", a 251-page
"DOCX", a 289-page Markdown file, each well over the documents' share of a 128k window),
with facts planted at known pages.

Each fact is about a named subject ("the Kestrel intake pump") and comes with two
questions: one in the fact's own words, and one in other words that shares only the
subject's name with it. The subject is also named on eight to twenty other pages (decoys), in
sentences about something else, and the filler prose is full of the common words the
questions in other words use ("first", "service", "allowed", "staff"), so those pages
compete the way they do in real manuals.
"""

import random
from dataclasses import dataclass

NOUNS = (  # noqa: SIM905
    "valve pipe pump tank filter panel cable relay sensor gauge motor fan duct boiler "
    "meter switch breaker feeder channel basin weir gate screen hopper conveyor crane "
    "hoist ladder platform walkway railing hatch door lock key badge register log report "
    "schedule shift crew team operator engineer supervisor contractor inspector manager "
    "clerk visitor staff record form permit procedure manual checklist drawing sample "
    "test reading alarm signal display screen terminal server network backup battery "
    "generator transformer inverter circuit fuse lamp light heater cooler chiller "
    "compressor bearing seal gasket bolt flange coupling shaft impeller rotor stator "
    "winding insulation coating paint floor wall roof drain gutter trench road fence yard "
    "store workshop office canteen corridor stair room building site area zone"
).split()
ADJECTIVES = (  # noqa: SIM905
    "main spare new old upper lower inner outer north south east west central daily "
    "weekly monthly annual first second final primary secondary temporary permanent "
    "manual automatic standard special minor major routine critical local remote internal "
    "external small large heavy light open closed dry wet clean safe"
).split()
VERBS = (  # noqa: SIM905
    "checked inspected recorded replaced cleaned tested logged approved signed reviewed "
    "measured adjusted repaired installed removed isolated locked opened closed started "
    "stopped reported serviced calibrated painted moved stored issued returned updated "
    "filed sent received allowed required scheduled completed"
).split()
COMMON = (  # noqa: SIM905
    "first time year service staff people allowed maximum minimum number level permitted "
    "rule limit how many much long often every before after during responsible owner "
    "named original who hold holds built made work working kept keeps place put set cost "
    "costs paid price total"
).split()

SUBJECT_HEADS = (  # noqa: SIM905
    "intake pump|settling basin|relief valve|feeder cable|cooling fan|lift station|"
    "transfer switch|sludge hopper|boiler house|chlorine store|pressure tank|control room|"
    "gate house|filter bed|aeration blower|standby generator|weighbridge|fire hydrant|"
    "pump house|sample tap"
).split("|")
SUBJECT_NAMES = (  # noqa: SIM905
    "Kestrel Marlow Thistle Quarry Bramble Osprey Juniper Corrin Halden Vesper Tarn Alder "
    "Moorcroft Pellow Sedge Wrenfield Caddis Lowther Fenwick Ashby Brindle Calder Dunmore "
    "Elsdon Garrow Hatherly Ingram Kelso Lindow Morden Nettle Orrin Prescott Radley "
    "Selwood Thornby Ulverley Whitlow Yarrow Zennor"
).split()

# (fact, question in the fact's words, question in other words); {s} is the subject.
FACTS = (
    (
        "The {s} was commissioned in {year} after a two-year delay in the supply of parts.",
        "In what year was the {s} commissioned?",
        "When did the {s} first go into service?",
    ),
    (
        "Only engineers holding a grade {grade} certificate may energise the {s}.",
        "Which certificate grade may energise the {s}?",
        "Which staff are allowed to switch on the {s}?",
    ),
    (
        "The {s} is rated for a working pressure of {num} kilopascals.",
        "What working pressure is the {s} rated for?",
        "What is the maximum pressure the {s} can take?",
    ),
    (
        "A full overhaul of the {s} is carried out every {num2} months.",
        "How often is a full overhaul of the {s} carried out?",
        "How many months pass between major rebuilds of the {s}?",
    ),
    (
        "The {s} draws its power from substation {code}.",
        "Which substation does the {s} draw its power from?",
        "Where does the electricity for the {s} come from?",
    ),
    (
        "Replacement of the {s} was budgeted at {money} euros in the capital plan.",
        "What was the replacement of the {s} budgeted at?",
        "How much will it cost to put in a new {s}?",
    ),
    (
        "The {s} was designed by the consultancy {firm} and Partners.",
        "Which consultancy designed the {s}?",
        "Who drew up the plans for the {s}?",
    ),
    (
        "The emergency shutdown code for the {s} is {code2}.",
        "What is the emergency shutdown code for the {s}?",
        "What do I key in to stop the {s} in a crisis?",
    ),
    (
        "At most {small} people may stand on the {s} deck at once.",
        "How many people may stand on the {s} deck at once?",
        "What is the crowd limit on top of the {s}?",
    ),
    (
        "Readings from the {s} are archived for {small} years at the records office in {town}.",
        "For how many years are readings from the {s} archived?",
        "How long do we keep the measurements taken at the {s}?",
    ),
)
TOWNS = ("Ambleside Bexhill Corbridge Dunstable Egremont Frome Garstang Hexham Ilkley").split()  # noqa: SIM905
FIRMS = ("Arkwright Bellamy Cotterill Dunphy Eccleston Fairbairn Greatorex Holroyd").split()  # noqa: SIM905


@dataclass(frozen=True, slots=True)
class Fact:
    page: int  # from 1
    sentence: str
    verbatim: str  # the question in the fact's words
    other_words: str  # the question in other words


@dataclass(frozen=True, slots=True)
class BenchDocument:
    name: str
    pages: list[str]
    facts: list[Fact]


def _sentence(rng: random.Random, subject: str | None = None) -> str:
    def noun() -> str:
        return rng.choice(NOUNS)

    pattern = rng.randrange(8)
    a, c = rng.choice(ADJECTIVES), rng.choice(COMMON)
    thing = f"the {subject}" if subject is not None else f"the {a} {noun()}"
    options = (
        f"{thing.capitalize()} is {rng.choice(VERBS)} by the {noun()} {noun()} "
        f"before each {c} {noun()}.",
        f"Every {noun()} at {thing} must be {rng.choice(VERBS)} and the {c} noted in the "
        f"{noun()} log.",
        f"The {c} {noun()} for {thing} is set by the {noun()} {noun()} and {rng.choice(VERBS)} "
        f"each {rng.choice(ADJECTIVES)} {noun()}.",
        f"Staff working near {thing} keep the {noun()} {rng.choice(VERBS)} and report any "
        f"{c} {noun()} to the {noun()}.",
        f"When {thing} is {rng.choice(VERBS)}, the {noun()} and the {noun()} are "
        f"{rng.choice(VERBS)} in turn.",
        f"A {rng.choice(ADJECTIVES)} {noun()} was {rng.choice(VERBS)} at {thing} in the "
        f"{c} year of the {noun()} programme.",
        f"The {noun()} {noun()} at {thing} is {rng.choice(VERBS)} after the {c} "
        f"{noun()} of each shift.",
        f"No {noun()} is {rng.choice(VERBS)} at {thing} without a {noun()} from the "
        f"{rng.choice(ADJECTIVES)} {noun()}.",
    )
    return options[pattern]


def _fact(rng: random.Random, template: tuple[str, str, str], subject: str) -> tuple[str, ...]:
    values = {
        "s": subject,
        "year": rng.randrange(1961, 2019),
        "grade": rng.choice("ABCDE") + str(rng.randrange(2, 6)),
        "num": rng.randrange(180, 990),
        "num2": rng.choice((18, 30, 42, 54, 66)),
        "code": f"{rng.choice('KLMNPRST')}{rng.randrange(10, 99)}",
        "code2": f"{rng.randrange(1000, 9999)}-{rng.choice('XYZQ')}",
        "money": f"{rng.randrange(120, 990)},000",
        "firm": rng.choice(FIRMS),
        "small": rng.randrange(3, 12),
        "town": rng.choice(TOWNS),
    }
    return tuple(part.format(**values) for part in template)


def bench_document(
    name: str, pages: int, words_per_page: int, seed: int, *, markdown: bool = False
) -> BenchDocument:
    """A document of `pages` pages of about `words_per_page` words in paragraphs, with 30
    facts about 30 subjects, each subject also named on 8-20 decoy pages, as a manual names
    its parts again and again."""
    rng = random.Random(seed)
    subjects = [
        f"{rng.choice(SUBJECT_NAMES)} {head}"
        for head in rng.sample(SUBJECT_HEADS * 2, 30)  # names may repeat across heads
    ]
    subjects = list(dict.fromkeys(subjects))
    while len(subjects) < 30:
        subjects.append(f"{rng.choice(SUBJECT_NAMES)} {rng.choice(SUBJECT_HEADS)} annexe")
        subjects = list(dict.fromkeys(subjects))
    fact_pages = sorted(rng.sample(range(3, pages + 1), len(subjects)))
    planted: dict[int, list[tuple[str, Fact]]] = {}
    facts = []
    for i, (subject, page) in enumerate(zip(subjects, fact_pages, strict=True)):
        sentence, verbatim, other = _fact(rng, FACTS[i % len(FACTS)], subject)
        fact = Fact(page, sentence, verbatim, other)
        facts.append(fact)
        planted.setdefault(page, []).append(("fact", fact))
    decoys: dict[int, list[str]] = {}
    for subject, page in zip(subjects, fact_pages, strict=True):
        others = [p for p in range(1, pages + 1) if p != page]
        for decoy in rng.sample(others, rng.randrange(8, 21)):
            decoys.setdefault(decoy, []).append(subject)
    texts = []
    for number in range(1, pages + 1):
        sentences: list[str] = []
        words = 0
        while words < words_per_page:
            sentence = _sentence(rng)
            sentences.append(sentence)
            words += len(sentence.split())
        for subject in decoys.get(number, []):
            sentences.insert(rng.randrange(len(sentences) + 1), _sentence(rng, subject))
        for _, fact in planted.get(number, []):
            sentences.insert(rng.randrange(len(sentences) + 1), fact.sentence)
        paragraphs = []
        at = 0
        while at < len(sentences):
            size = rng.randrange(3, 7)
            paragraphs.append(" ".join(sentences[at : at + size]))
            at += size
        if markdown:
            paragraphs.insert(0, f"## {number}. {rng.choice(ADJECTIVES).title()} works")
        texts.append("\n\n".join(paragraphs))
    return BenchDocument(name, texts, facts)


def bench_documents() -> list[BenchDocument]:
    """The three documents; their sizes in pages match the issue's."""
    return [
        bench_document("plant-manual.pdf", 400, 430, seed=1),
        bench_document("operations-handbook.docx", 251, 620, seed=2),
        bench_document("site-guide.md", 289, 560, seed=3, markdown=True),
    ]
