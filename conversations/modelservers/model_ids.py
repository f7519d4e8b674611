"""What a model id says, read in this one place: which model server it belongs to, the id
that server knows it by, and the words people see for it. No Django, no settings: the
registry (providers.py) decides which configured server answers, pages and frames ask here
how to name it.

Ids are unambiguous across providers: Mistral's are plain (`mistral-small-latest`), the small
model inside this process is `local/smollm2-135m`, and a model of the OpenAI-compatible
endpoint `ollama` is `ollama/<its own id>` (`ollama/llama3.2:1b`).
"""

from dataclasses import dataclass

MISTRAL = "mistral"
LOCAL = "local"
LOCAL_MODEL_ID = "smollm2-135m"
LOCAL_MODEL = f"{LOCAL}/{LOCAL_MODEL_ID}"


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A model id taken apart."""

    id: str
    provider: str  # "mistral", "local", or the name of an OpenAI-compatible endpoint
    upstream: str  # the id its server knows the model by

    @property
    def is_local(self) -> bool:
        return self.provider == LOCAL

    @property
    def author(self) -> str:
        """Who answers, as the thread heads an answer and the composer invites a question:
        the small local model must not pass for Mistral's, nor an endpoint's model."""
        if self.provider == MISTRAL:
            return "Mistral"
        if self.provider == LOCAL:
            return "Small local model"
        return self.upstream or self.id


def parse(model_id: str) -> ModelRef:
    """`provider/upstream`, or a plain id of Mistral's. The prefix is a provider's name only
    by its shape: whether such a provider is configured is the registry's question."""
    head, slash, rest = model_id.partition("/")
    if not slash:
        return ModelRef(model_id, MISTRAL, model_id)
    return ModelRef(model_id, head, rest)


def author(model_id: str) -> str:
    """ModelRef.author for an id; "" for no model."""
    return parse(model_id).author if model_id else ""
