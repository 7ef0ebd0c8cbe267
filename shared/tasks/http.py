"""The HTTP task: call a URL; anything but an accepted answer, or no answer in time, fails the run."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from shared.task_types import ConfigField, FieldType, Option, RunContext, TaskFailed, TaskType

EXCERPT_CHARS = 200


def http_request(context: RunContext) -> str:
    """Send the configured request; the answer's status and an excerpt of its body are the result."""
    config = context.config
    method = config.get("method") or "GET"
    body = config.get("body")
    data = body.encode() if method == "POST" and body else None
    request = urllib.request.Request(config["url"], data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", _content_type(str(body)))
    timeout_s = float(config.get("timeoutS") or 10)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (operator-set URL)
            excerpt = response.read(EXCERPT_CHARS).decode("utf-8", "replace").strip()
            return f"HTTP {response.status}: {excerpt}"
    except urllib.error.HTTPError as exc:
        excerpt = exc.read(EXCERPT_CHARS).decode("utf-8", "replace").strip()
        raise TaskFailed(f"HTTP {exc.code} {exc.reason} from {config['url']}: {excerpt}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TaskFailed(f"request to {config['url']} failed: {reason}") from None


def _content_type(body: str) -> str:
    try:
        json.loads(body)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"


HTTP_REQUEST = TaskType(
    id="http_request",
    label="HTTP Request",
    description="Calls a URL; fails on a non-2xx answer or a network error",
    handler=http_request,
    config_fields=(
        ConfigField("url", "URL", FieldType.URL, required=True),
        ConfigField(
            "method", "Method", FieldType.SELECT, options=(Option("GET", "GET"), Option("POST", "POST"))
        ),
        ConfigField("body", "Body (POST)", FieldType.TEXT),
        ConfigField("timeoutS", "Timeout (seconds)", FieldType.NUMBER, minimum=1, maximum=120),
    ),
)
