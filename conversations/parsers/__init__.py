"""Uploaded files parsed: documents (PDF, DOCX, text) and images. Everything here reads
bytes a stranger sent, so it runs only inside the sandbox's child processes (sandbox.py,
child.py), each under memory and CPU limits and a deadline, and stops at the first limit a
file reaches. No Django here: a child never touches the database or the settings, and the
limits come with each call."""
