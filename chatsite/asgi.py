"""The ASGI entry point: HTTP goes to Django, websockets through session auth to the chat."""

import gc
import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from chatsite import fast_path, process  # noqa: E402
from chatsite.body_limit import RequestBodyLimit  # noqa: E402
from chatsite.fast_path.daphne_frames import DirectFrames  # noqa: E402
from chatsite.socket_auth import SessionAuthMiddleware  # noqa: E402
from chatsite.socket_origin import SameOriginOnly  # noqa: E402
from conversations.live.routing import websocket_urlpatterns  # noqa: E402

fast_path.install(enabled=settings.CHAT_FAST_PATH)
process.install()  # start-up sweep and graceful stop under daphne (chatsite/process.py)
# The event loop shares the GIL with the database thread. Python hands it over every 5 ms by
# default, which showed as 5 ms stalls between tokens under load (docs/performance.md).
sys.setswitchinterval(0.001)

websocket_app = SameOriginOnly(SessionAuthMiddleware(URLRouter(websocket_urlpatterns)))
if fast_path.active.daphne_frames:  # frames written straight to daphne's connection
    websocket_app = DirectFrames(websocket_app)

application = ProtocolTypeRouter(
    {
        "http": RequestBodyLimit(django_asgi_app, limit=settings.MAX_REQUEST_BODY_BYTES),
        "websocket": websocket_app,
    }
)

# Everything loaded so far (Django, the apps, daphne) lives as long as the process: moved out
# of the collector's reach, a full collection no longer walks it, which had stalled every
# stream for 60-70 ms at a time under load (docs/performance.md).
gc.collect()
gc.freeze()
