"""The model servers: which one answers a model (providers.py, model_ids.py), the client for
Mistral's API and OpenAI-compatible servers (mistral.py, openai_compat.py) over their
transport (http_stream.py for streams, transport.py for the rest), the SSE parser, the
small model inside this process (local_model.py), and the errors and results they share.
Nothing here imports Django but the registry, which reads the settings."""
