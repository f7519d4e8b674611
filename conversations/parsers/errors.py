"""Why a file was refused: raised in a sandbox child, carried to the parent as plain data
(sandbox.py) and raised there again as the same class."""


class Rejected(Exception):
    """A file we will not store, or could not read; `message` names the file and the
    reason, for people, and `code` is the error code the page and the API get."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class DocumentRejected(Rejected):
    """A document (PDF, DOCX, text) refused or unreadable."""


class ImageRejected(Rejected):
    """An image refused or unreadable."""


class ImportRejected(Rejected):
    """An import file (an export of this site, ChatGPT's) refused as a whole."""


# The classes a child may name in its answer, by name.
REJECTIONS: dict[str, type[Rejected]] = {
    cls.__name__: cls for cls in (Rejected, DocumentRejected, ImageRejected, ImportRejected)
}
