"""Settings, read from the environment (and a `.env` file if present) in this one module.

Everything that differs between a laptop and a deployment is an environment variable;
the defaults give a working single-process site: SQLite, the in-memory channel layer,
and a secret key generated once into `var/secret_key`.

Over 400 lines: every setting the site has is here, each with the comment that says what it
does, because this is the one module that reads the environment.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DATA_DIR = Path(env.str("DATA_DIR", default=str(BASE_DIR / "var")))
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """The environment's key, else one generated on first run and kept beside the database,
    so sessions survive restarts without a constant in the repository."""
    if key := env.str("SECRET_KEY", default=""):
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic",  # its checks of the SERVESTATIC_* settings
    "django.contrib.staticfiles",
    "channels",
    "axes",  # login throttling: failed attempts are rows, so a lockout holds in every process
    "django_tasks",
    "django_tasks_db",  # the job queue's tables, migrated with the others
    "conversations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    # Static files, after the two above so they keep nosniff and the CSP, before the session.
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its page (429).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
}
# Keep connections open: the socket path reaches the database through one worker thread,
# and opening a connection per query cost more than the queries (docs/performance.md).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers (page loads) run while a generation saves its progress, and the
    # timeout waits for the writer instead of failing with "database is locked". Immediate
    # transactions take the write lock when they begin: a transaction that read first and
    # wrote later could not wait for it (SQLite fails such an upgrade at once when another
    # process, the job worker, wrote meanwhile), and failed uploads that way.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file, not memory: async tests and live servers need a database other threads see;
    # one per process, so two test runs side by side do not share it.
    DATABASES["default"].setdefault("TEST", {})["NAME"] = str(
        DATA_DIR / f"test-{os.getpid()}.sqlite3"
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The job queue (django-tasks): tasks are rows in the site's own database, SQLite or
# PostgreSQL, run by `manage.py worker`; on PostgreSQL several workers share it safely
# (SELECT ... FOR UPDATE SKIP LOCKED). The tests run tasks in-process (tests/conftest.py).
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 gives up on a read after 5 s by default, as long as the
                # layer's blocking pop waits for a message, and every idle socket then
                # closed with 1011: reads may take longer than that wait (a dead Redis
                # is still noticed). It also refuses a 101st connection instead of
                # waiting for one, which a crowd of tabs connecting at once needs.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15, "max_connections": 1000}],
                "capacity": 1000,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: it refuses a locked-out username and address before any password is
# checked; the model backend then signs people in (and is the one a session names).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Login throttling (django-axes), on the site's and the admin's login alike: after this many
# wrong passwords for one username from one address, that pair is refused, even with the
# right password, for the cool-off (minutes). Per pair, so a stranger guessing cannot lock a
# user out from everywhere, and one address cannot try every username unnoticed by the log.
AXES_FAILURE_LIMIT = env.int("CHAT_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("CHAT_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False  # its banner on every start and every lockout line: our own log says it
AXES_LOCKOUT_CALLABLE = "conversations.web.accounts.login_locked_out"


def _client_address(request) -> str | None:
    """The client's address as daphne put it in the ASGI scope. Behind the proxy daphne runs
    with --proxy-headers and takes it from X-Forwarded-For (docs/deploy.md); the header itself
    is never read here, since anyone can send one (django-ipware would, if installed)."""
    return request.META.get("REMOTE_ADDR")


AXES_CLIENT_IP_CALLABLE = _client_address

# Who may make an account (conversations/accounts.py): `open` (anyone), `closed` (only with an
# invitation from the admin), `approval` (anyone, signing in once an administrator approves).
# Open by default so a fresh install's first user can "Create an account"; check --deploy
# warns while it is open.
CHAT_SIGNUP = env.str("CHAT_SIGNUP", default="open")

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"
# Served by servestatic straight from STATICFILES_DIRS and the apps' static folders, also with
# DEBUG off, so the site runs without a collectstatic step.
SERVESTATIC_USE_FINDERS = True
# Static files are this site's own: no other origin needs to read them.
SERVESTATIC_ALLOW_ALL_ORIGINS = False
MEDIA_ROOT = DATA_DIR / "media"

# HTTPS (docs/deploy.md): CHAT_HTTPS=true says the site is served over https, TLS ended by the
# proxy. Off by default, so the same settings keep working on a laptop over plain http.
CHAT_HTTPS = env.bool("CHAT_HTTPS", default=False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = CHAT_HTTPS
# A year, on this host and its own subdomains (chat.example.org covers *.chat.example.org,
# not its siblings). Preloading is left to the operator: the header alone lets anyone submit
# the domain to the browsers' list, a commitment for every subdomain of the apex.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if CHAT_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=CHAT_HTTPS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# A request that reached daphne over http is redirected to https. Behind the shipped nginx every
# request is https already (daphne --proxy-headers reads X-Forwarded-Proto), so this only
# catches a proxy that forgets the scheme; /health stays plain, for probes on the machine.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=CHAT_HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^health$"]
# Not needed under daphne --proxy-headers, which puts the scheme in the ASGI scope; for a
# server that does not, the header a trusted proxy sets to "https" (e.g. X-Forwarded-Proto).
if proxy_ssl_header := env.str("SECURE_PROXY_SSL_HEADER", default=""):
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + proxy_ssl_header.upper().replace("-", "_"), "https")
# check --deploy asks for preload (security.W021): declining it is a choice, not a fault.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# No inline script, no outside host: the model's answers are rendered on the server
# and may only show images served by this site.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# Mistral's API, used when a key is set or the base URL is changed (a Mistral-compatible
# gateway); other OpenAI-compatible servers are CHAT_ENDPOINTS. The key never leaves the server.
MISTRAL_API_KEY = env.str("MISTRAL_API_KEY", default="")
MISTRAL_BASE_URL = env.str("MISTRAL_BASE_URL", default="https://api.mistral.ai/v1")
MISTRAL_MODEL = env.str("MISTRAL_MODEL", default="mistral-small-latest")
MISTRAL_TITLE_MODEL = env.str("MISTRAL_TITLE_MODEL", default="ministral-8b-latest")
MISTRAL_CONNECT_TIMEOUT = env.float("MISTRAL_CONNECT_TIMEOUT", default=10.0)
# Seconds without a byte from the model server before the answer counts as stalled.
MISTRAL_READ_TIMEOUT = env.float("MISTRAL_READ_TIMEOUT", default=60.0)
MISTRAL_MAX_RETRIES = env.int("MISTRAL_MAX_RETRIES", default=3)


def _endpoint_env(name: str) -> str:
    return name.strip().upper().replace("-", "_")


# OpenAI-compatible servers besides Mistral (conversations/modelservers/providers.py):
# `name=base_url` pairs, comma-separated; each one's key in CHAT_ENDPOINT_<NAME>_API_KEY, its
# models that can see images in CHAT_ENDPOINT_<NAME>_VISION_MODELS, those that can call tools
# in CHAT_ENDPOINT_<NAME>_TOOL_MODELS, and the context window it
# serves in CHAT_ENDPOINT_<NAME>_CONTEXT_LENGTH (tokens; when unset, what the server reports,
# else 4,096 assumed). Checked by `manage.py check`.
CHAT_ENDPOINTS = [
    {
        "name": name.strip(),
        "base_url": base_url.strip(),
        "api_key": env.str(f"CHAT_ENDPOINT_{_endpoint_env(name)}_API_KEY", default=""),
        "vision_models": env.list(f"CHAT_ENDPOINT_{_endpoint_env(name)}_VISION_MODELS", default=[]),
        "tool_models": env.list(f"CHAT_ENDPOINT_{_endpoint_env(name)}_TOOL_MODELS", default=[]),
        "context_length": env.int(f"CHAT_ENDPOINT_{_endpoint_env(name)}_CONTEXT_LENGTH", default=0),
    }
    for name, _, base_url in (
        entry.partition("=") for entry in env.list("CHAT_ENDPOINTS", default=[])
    )
]
# The model new conversations start with; empty: MISTRAL_MODEL when Mistral is configured
# (a key, or another MISTRAL_BASE_URL), else the local model.
CHAT_DEFAULT_MODEL = env.str("CHAT_DEFAULT_MODEL", default="")
# The small model that runs inside this process (conversations/modelservers/local_model.py).
LOCAL_MODEL_ENABLED = env.bool("LOCAL_MODEL_ENABLED", default=True)
# CPU threads it computes with; 0: one per core this process may use.
LOCAL_MODEL_THREADS = env.int("LOCAL_MODEL_THREADS", default=0)
# The longest answer it writes, in tokens (a conversation's max_tokens may ask for fewer).
LOCAL_MODEL_MAX_TOKENS = env.int("LOCAL_MODEL_MAX_TOKENS", default=512)

# A conversation's page shows its newest this many messages; earlier ones load on demand.
CHAT_PAGE_MESSAGES = env.int("CHAT_PAGE_MESSAGES", default=200)
# The longest question accepted over the socket, in characters.
CHAT_MAX_MESSAGE_CHARS = env.int("CHAT_MAX_MESSAGE_CHARS", default=32_000)
# How often a streaming answer's text is saved, in seconds (always saved at the end).
CHAT_SAVE_INTERVAL = env.float("CHAT_SAVE_INTERVAL", default=1.0)
# While the database cannot be reached, an answer's ending waits in memory and is tried
# again for this long (seconds) before the answer is given up to the take-over below.
CHAT_SAVE_RETRY_SECONDS = env.float("CHAT_SAVE_RETRY_SECONDS", default=120.0)
# With several processes: the longest an answer whose process died (kill -9, power) stays
# `streaming` before the others mark it interrupted, in seconds (docs/reliability.md).
CHAT_TAKEOVER_SECONDS = env.float("CHAT_TAKEOVER_SECONDS", default=10.0)
# On SIGTERM or SIGINT a process takes no new question and lets running answers finish for
# this long (seconds), then stores the rest as interrupted with their text (docs/deploy.md).
CHAT_DRAIN_SECONDS = env.float("CHAT_DRAIN_SECONDS", default=20.0)
# How often the open tail of a streaming answer is rendered to HTML, in seconds; between
# renders, tabs show the new text as it comes and the formatting catches up.
CHAT_RENDER_INTERVAL = env.float("CHAT_RENDER_INTERVAL", default=0.25)
# With many answers streaming at once, each tail is rendered less often so that the process
# renders at most about this many tails per second (the text itself is never delayed).
CHAT_TAIL_RENDERS_PER_SECOND = env.float("CHAT_TAIL_RENDERS_PER_SECOND", default=150.0)
# The fast path (chatsite/fast_path/): streamed frames skip layers of Twisted, daphne, autobahn,
# Channels and channels_redis by relying on their internals, for the releases pinned in
# pyproject.toml. Off: the frameworks' own (slower) road everywhere. On, a piece whose
# internals are not found at start-up stays on that road, with a warning in the log.
CHAT_FAST_PATH = env.bool("CHAT_FAST_PATH", default=True)

# Conversations inactive for longer than this many days are deleted by `manage.py retention`
# (run it daily: docs/deploy.md); 0 keeps them for ever.
CHAT_RETENTION_DAYS = env.int("CHAT_RETENTION_DAYS", default=0)

# Tools an answer's model may call (conversations/tools/, live/tool_steps.py). One answer
# takes at most CHAT_TOOL_MAX_STEPS model calls; each tool call may run CHAT_TOOL_TIMEOUT
# seconds and its result is cut to CHAT_TOOL_RESULT_CHARS characters; a call that needs the
# user's approval waits CHAT_TOOL_APPROVAL_SECONDS for it, then counts as refused.
CHAT_TOOL_MAX_STEPS = env.int("CHAT_TOOL_MAX_STEPS", default=6)
CHAT_TOOL_TIMEOUT = env.float("CHAT_TOOL_TIMEOUT", default=30.0)
CHAT_TOOL_RESULT_CHARS = env.int("CHAT_TOOL_RESULT_CHARS", default=16000)
CHAT_TOOL_APPROVAL_SECONDS = env.float("CHAT_TOOL_APPROVAL_SECONDS", default=600.0)
# MCP servers, from a JSON file in the format MCP clients share:
# {"mcpServers": {"<name>": {"command": "...", "args": [...], "env": {...}} or {"url": "..."}}}
# plus, per server, "approval": true (every tool waits for the user's click) or a list of
# the tools that do. Their tool lists are kept for CHAT_MCP_LIST_SECONDS.
CHAT_MCP_CONFIG = env.str("CHAT_MCP_CONFIG", default="")
CHAT_MCP_LIST_SECONDS = env.float("CHAT_MCP_LIST_SECONDS", default=60.0)


def _mcp_servers(path: str) -> list[dict]:
    """CHAT_MCP_CONFIG's servers, checked: a broken file stops the site at start with the
    problem named, rather than leaving tools silently missing."""
    import json
    import re

    from django.core.exceptions import ImproperlyConfigured

    if not path:
        return []
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        entries = raw["mcpServers"]
        if not isinstance(entries, dict):
            raise TypeError("mcpServers is not an object")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ImproperlyConfigured(
            f'CHAT_MCP_CONFIG: {path} is not a JSON file with an "mcpServers" object ({err}).'
        ) from None
    servers = []
    for name, entry in entries.items():
        where = f"CHAT_MCP_CONFIG: server {name!r}"
        if not re.fullmatch(r"[a-zA-Z0-9_-]{1,32}", name):
            raise ImproperlyConfigured(f"{where}: a name is 1-32 letters, digits, _ or -.")
        if not isinstance(entry, dict) or bool(entry.get("command")) == bool(entry.get("url")):
            raise ImproperlyConfigured(f'{where}: give either "command" or "url".')
        approval = entry.get("approval", False)
        if isinstance(approval, list) and all(isinstance(a, str) for a in approval):
            approval = frozenset(approval)
        elif not isinstance(approval, bool):
            raise ImproperlyConfigured(f'{where}: "approval" is true, false or a list of tools.')
        url = str(entry.get("url") or "")
        if url and not url.startswith(("http://", "https://")):
            raise ImproperlyConfigured(f"{where}: the url must start with http:// or https://.")
        servers.append(
            {
                "name": name,
                "command": str(entry.get("command") or ""),
                "args": tuple(str(a) for a in entry.get("args") or ()),
                "env": tuple((str(k), str(v)) for k, v in (entry.get("env") or {}).items()),
                "url": url,
                "approval": approval,
            }
        )
    return servers


CHAT_MCP_SERVERS = _mcp_servers(CHAT_MCP_CONFIG)

# Images a user attaches (conversations/images.py). Vision models in order of preference: an
# answer about images goes to the first the model server lists as able to see, when the
# conversation's own model cannot.
CHAT_VISION_MODELS = env.list(
    "CHAT_VISION_MODELS",
    default=[
        "pixtral-large-latest",
        "mistral-medium-latest",
        "mistral-large-latest",
        "mistral-small-latest",
    ],
)
# The longer side of the copy sent to the model, in pixels: current vision models work up to
# 1540 (Pixtral 1024) and the API only downscales anything larger.
CHAT_IMAGE_MAX_SIDE = env.int("CHAT_IMAGE_MAX_SIDE", default=1540)
# The largest HTTP request body, refused with 413 from its Content-Length before Django reads
# it (chatsite/body_limit.py): one 10 MB image and its multipart envelope. Bodies under it are
# parsed in memory, so no upload is spooled to disk twice.
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", default=11_000_000)
FILE_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# Documents a user attaches (conversations/documents/).
CHAT_DOCUMENT_MAX_BYTES = env.int("CHAT_DOCUMENT_MAX_BYTES", default=10_000_000)
CHAT_DOCUMENT_MAX_PAGES = env.int("CHAT_DOCUMENT_MAX_PAGES", default=500)
# The most text a document may hold (500 full pages of a dense PDF), and the most a DOCX may
# unpack to, its XML included: reading stops as soon as either is passed.
CHAT_DOCUMENT_MAX_CHARACTERS = env.int("CHAT_DOCUMENT_MAX_CHARACTERS", default=3_000_000)
CHAT_DOCUMENT_MAX_UNPACKED_BYTES = env.int("CHAT_DOCUMENT_MAX_UNPACKED_BYTES", default=50_000_000)
# Every uploaded file (document or image) is parsed in a pool of child processes of the
# process that needs it (conversations/parsing.py): this many, each allowed this much memory
# over its own start-up, and each file this many seconds (wall clock and CPU) in all.
CHAT_PARSE_WORKERS = env.int("CHAT_PARSE_WORKERS", default=2)
CHAT_PARSE_MEMORY_MB = env.int("CHAT_PARSE_MEMORY_MB", default=768)
CHAT_PARSE_SECONDS = env.float("CHAT_PARSE_SECONDS", default=10.0)
# Documents are read by the job worker (`manage.py worker`, conversations/documents/jobs.py),
# never by the site's processes. One that has shown no sign of life for this many seconds
# (a reader renews it every quarter of that) is put back on the queue; after this many
# readers began it and died, it is failed instead.
CHAT_INGEST_STALE_SECONDS = env.float("CHAT_INGEST_STALE_SECONDS", default=60.0)
CHAT_INGEST_MAX_ATTEMPTS = env.int("CHAT_INGEST_MAX_ATTEMPTS", default=3)
# Scanned PDF pages go to Mistral's OCR (when MISTRAL_API_KEY is set) this many at a time.
CHAT_OCR_MODEL = env.str("CHAT_OCR_MODEL", default="mistral-ocr-latest")
CHAT_OCR_BATCH_PAGES = env.int("CHAT_OCR_BATCH_PAGES", default=8)
# Documents whose text fits this share of the model's context window are sent whole; larger
# ones are cut into passages and the most relevant fill that share (at most
# CHAT_RETRIEVAL_CHUNKS of them when set; 0: as many as fit).
CHAT_DOCUMENT_CONTEXT_SHARE = env.float("CHAT_DOCUMENT_CONTEXT_SHARE", default=0.5)
CHAT_RETRIEVAL_CHUNKS = env.int("CHAT_RETRIEVAL_CHUNKS", default=0)
# Passages are ranked by BM25, fused with this embeddings model's ranking when a Mistral key
# is set and CHAT_RETRIEVAL_EMBEDDINGS is on. A failed embeddings call is not tried again
# for CHAT_EMBEDDINGS_RETRY_SECONDS; a document's passages are embedded this many calls at
# a time.
CHAT_EMBEDDINGS_MODEL = env.str("CHAT_EMBEDDINGS_MODEL", default="mistral-embed")
CHAT_RETRIEVAL_EMBEDDINGS = env.bool("CHAT_RETRIEVAL_EMBEDDINGS", default=True)
CHAT_EMBEDDINGS_RETRY_SECONDS = env.float("CHAT_EMBEDDINGS_RETRY_SECONDS", default=300.0)
CHAT_EMBEDDINGS_CONCURRENCY = env.int("CHAT_EMBEDDINGS_CONCURRENCY", default=4)

# Optional daily allowance of each user (conversations/usage.py), counted from midnight in
# TIME_ZONE over every kind of call; 0 means no limit. Once reached, questions fail with
# error_code "budget" and nothing is sent to the model server.
CHAT_DAILY_TOKEN_BUDGET = env.int("CHAT_DAILY_TOKEN_BUDGET", default=0)
CHAT_DAILY_COST_BUDGET_USD = env.float("CHAT_DAILY_COST_BUDGET_USD", default=0.0)

# Limits per user (conversations/limits.py), counted from the user's own rows so that they hold
# across processes; 0 turns one off. The defaults let a person chat, attach and start new
# conversations freely, and stop a script (or a stolen session) from spending the model
# servers' money or the machine's CPU: README, "Configuration", says why each number.
CHAT_QUESTIONS_PER_MINUTE = env.int("CHAT_QUESTIONS_PER_MINUTE", default=20)
CHAT_ANSWERS_AT_ONCE = env.int("CHAT_ANSWERS_AT_ONCE", default=3)
CHAT_CONVERSATIONS_PER_MINUTE = env.int("CHAT_CONVERSATIONS_PER_MINUTE", default=5)
CHAT_UPLOADS_PER_DAY = env.int("CHAT_UPLOADS_PER_DAY", default=100)
CHAT_UPLOAD_BYTES_PER_DAY = env.int("CHAT_UPLOAD_BYTES_PER_DAY", default=200_000_000)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # httpx logs every request at INFO: a line per answer is noise on the hot path.
    "loggers": {"httpx": {"level": "WARNING"}},
}
