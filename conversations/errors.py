"""Why an answer could not be written: one tree, whatever went wrong, so the generation has
one thing to catch and every ending carries a stable `code` (stored on the row, sent in
frames) and a `message` that is safe to show to people. No Django here.

    ChatError                   .code, .message
    ├── BudgetExceeded          "budget": the user's daily allowance is used up; nothing was sent
    ├── ModelUnavailable        "model_unavailable": no configured model server offers the model
    ├── NoVisionModel           "no_vision_model": images, and no model here can see them
    ├── ContextTooLong          "context_too_long": the question alone outgrows the window
    └── ModelServerError        the model server failed or refused: its own tree, with the HTTP
                                status and whether a retry may help (modelservers/errors.py)

Errors are raised where they arise and turned into words for a row or a frame at the edge
(the generation's ending, the consumer's error frame); nothing in between writes text for
users.
"""


class ChatError(Exception):
    """Base of every failure that ends an answer; `code` is stable, `message` safe to show."""

    code: str = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BudgetExceeded(ChatError):
    """The user's daily token or cost budget is used up: nothing is sent upstream."""

    code = "budget"


class ModelUnavailable(ChatError):
    """No configured provider offers this model id (or its provider is misconfigured)."""

    code = "model_unavailable"


class NoVisionModel(ChatError):
    """The request has images and no model the server offers can see them."""

    code = "no_vision_model"


class ContextTooLong(ChatError):
    """The question alone does not fit the model's context window: nothing was sent."""

    code = "context_too_long"
