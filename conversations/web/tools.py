"""The composer's tools menu: what tools the site offers, and which a conversation's answers
may call. Thin over tools/catalog.py and services.conversation_tools_set."""

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from conversations.errors import ChatError
from conversations.live import broadcast
from conversations.live.frames import conversation_data
from conversations.modelservers import providers
from conversations.services import conversation_tools_set
from conversations.tools.catalog import catalog
from conversations.web.responses import conversation_or_404


@login_required
@require_GET
async def tools_json(request: HttpRequest) -> JsonResponse:
    """Every tool with its description and whether each call waits for approval, what went
    wrong listing an MCP server, and whether `?model=` can call tools at all."""
    tools, problems = await catalog()
    data = {
        "tools": [
            {
                "key": tool.key,
                "title": tool.title,
                "description": tool.description,
                "source": tool.source,
                "approval": tool.approval,
            }
            for tool in tools
        ],
        "problems": problems,
    }
    model = request.GET.get("model", "")
    if model:
        try:
            data["model_calls_tools"] = await providers.can_call_tools(model)
        except ChatError:  # the model list could not be read: not known, so not said
            data["problems"].append("Whether this model can call tools could not be checked.")
    return JsonResponse(data)


@login_required
@require_POST
async def conversation_tools(request: HttpRequest, pk: int) -> JsonResponse:
    """Switch the posted `tools` (keys from tools.json, repeated) on for the conversation's
    next answers, and every other one off; every tab of the user is told."""
    conversation = await sync_to_async(conversation_or_404)(request, pk)
    keys = request.POST.getlist("tools")
    offered = {tool.key for tool in (await catalog())[0]}
    unknown = [key for key in keys if key not in offered and key not in conversation.tools]
    if unknown:
        message = f"No tool here is called {unknown[0][:80]!r}; reload the list of tools."
        return JsonResponse({"errors": {"tools": [message]}}, status=400)
    conversation = await sync_to_async(conversation_tools_set)(conversation=conversation, keys=keys)
    data = conversation_data(conversation)
    await broadcast.user_publish(request.user.pk, {"type": "conversation", "conversation": data})
    return JsonResponse({"conversation": data})
