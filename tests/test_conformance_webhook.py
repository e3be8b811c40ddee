"""The webhook channel passes the adapter conformance suite.

The other side is an HTTP client. A webhook keeps no request across a restart (a
client whose request was cut off sends it again, with the same id), so the suite sends
the message again after its simulated crash; the webhook must then answer it with the
reply it already gave, not ask the agent again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from spacebot_contrib.webhook import WebhookAdapter
from spacebot_core.testing import AdapterConformance, ChannelDriver, Delivered, Injected

TOKEN = "conformance-token-0123456789"
TIMEOUT_SECS = 10.0


class WebhookDriver(ChannelDriver):
    """A client POSTing each message and keeping the HTTP replies it gets."""

    keeps_unacknowledged = False

    def __init__(self) -> None:
        self.requests: list[asyncio.Task[tuple[int, dict[str, Any]]]] = []
        self.replies: list[tuple[int, dict[str, Any]]] = []

    def settings(self, runtime_key: str) -> dict[str, Any]:
        return {"token": TOKEN, "port": 0, "poll_interval_secs": 5.0}

    async def inject(self, adapter: WebhookAdapter, message: Injected) -> None:
        body = {
            "id": message.key,
            "message": message.text,
            "sender_id": message.sender_id,
            "conversation_id": message.conversation,
        }
        self.requests.append(asyncio.create_task(self._post(adapter.url, body)))
        deadline = time.monotonic() + TIMEOUT_SECS
        while message.key not in adapter.waiting_ids():
            assert time.monotonic() < deadline, "the webhook never took the request"
            await asyncio.sleep(0.01)

    @staticmethod
    async def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECS)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, json=body, headers=headers) as reply,
        ):
            return reply.status, await reply.json()

    async def delivered(self, adapter: WebhookAdapter) -> list[Delivered]:
        # Each request ended with its cycle (answered, or 503 when the instance stopped).
        finished, self.requests = self.requests, []
        self.replies += await asyncio.wait_for(asyncio.gather(*finished), TIMEOUT_SECS)
        return [
            Delivered(response.get("text", ""), body["id"])
            for status, body in self.replies
            if status == 200
            for response in body["responses"]
        ]


class TestWebhookChannelConformance(AdapterConformance):
    channel = "webhook"
    distribution = "spacebot-email"

    @pytest.fixture
    def driver(self) -> WebhookDriver:
        return WebhookDriver()
