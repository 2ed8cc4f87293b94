"""The hand-written layer over the generated endpoints (package `delta_api`).

The generated code knows every operation, model and status; this layer adds
what a generator cannot know: how to authenticate and stay authenticated,
that mutations carry an `Idempotency-Key` (and may then be retried safely),
how lists page, how errors are raised, and how a run's log streams.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from delta_api.client import AuthenticatedClient
from delta_api.types import UNSET, Response

T = TypeVar("T")

#: Statuses after which the same request (same Idempotency-Key) is retried.
RETRIED = frozenset({429, 502, 503, 504})


class DeltaError(Exception):
    """An error answer: the API's envelope, with the request's id.

    `status` is the HTTP status, `code` the stable machine-readable code
    (`not_found`, `rate_limited`, ...), `request_id` what to quote in a bug
    report (the server's log has the same id).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        request_id: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message} (request {request_id})")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.details = details

    @classmethod
    def from_http(cls, status: int, content: bytes, headers: httpx.Headers) -> DeltaError:
        try:
            body = json.loads(content)
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        return cls(
            status,
            str(body.get("code", "http_error")),
            str(body.get("message", content[:200].decode("utf-8", "replace"))),
            body.get("request_id") or headers.get("x-request-id"),
            body.get("details"),
        )


@dataclass(frozen=True)
class LogEvent:
    """One event of a run's log stream: `log` lines, then one `end`."""

    event: str
    data: Any
    id: str | None


class _Credentials(httpx.Auth):
    """Bearer authentication: an API key, or a session that refreshes.

    A session's access token lives 30 minutes: on a 401 the refresh token
    is exchanged once (rotating it) and the request sent again.
    """

    requires_response_body = True

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.access: str | None = None
        self.refresh: str | None = None

    def _bearer(self) -> str | None:
        return self.api_key or self.access

    def _refresh_request(self) -> httpx.Request:
        return httpx.Request(
            "POST",
            f"{self.base_url}/v1/auth/refresh",
            json={"refresh_token": self.refresh},
        )

    def _take(self, response: httpx.Response) -> bool:
        if response.status_code != 200:
            return False
        tokens = response.json()
        self.access = tokens["access_token"]
        self.refresh = tokens["refresh_token"]
        return True

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        bearer = self._bearer()
        if bearer:
            request.headers["Authorization"] = f"Bearer {bearer}"
        response = yield request
        if response.status_code == 401 and self.api_key is None and self.refresh:
            refreshed = yield self._refresh_request()
            if self._take(refreshed):
                request.headers["Authorization"] = f"Bearer {self.access}"
                yield request


def _app_headers(app_id: str | None) -> dict[str, str]:
    """`X-App-ID` (seed 004): the tenant to act in, for a user in several."""
    return {} if app_id is None else {"X-App-ID": app_id}


def _with_key(endpoint: Callable[..., T], kwargs: dict[str, Any]) -> dict[str, Any]:
    """A mutation gets a fresh Idempotency-Key unless the caller chose one,
    so that its retries execute at most once."""
    if "idempotency_key" in inspect.signature(endpoint).parameters and kwargs.get(
        "idempotency_key", UNSET
    ) in (UNSET, None):
        kwargs = {**kwargs, "idempotency_key": str(uuid.uuid4())}
    return kwargs


def _retry_after(response: Response[Any], attempt: int) -> float:
    value: str | None = response.headers.get("retry-after")
    if value is not None and value.isdigit():
        return min(float(value), 30.0)
    return min(0.2 * 2.0**attempt, 5.0)


def _raise_for(response: Response[Any]) -> None:
    if int(response.status_code) >= 400:
        headers = httpx.Headers(dict(response.headers))
        raise DeltaError.from_http(int(response.status_code), response.content, headers)


def _page_parts(page: Any) -> tuple[list[Any], str | None]:
    items = list(getattr(page, "items", []) or [])
    cursor = getattr(page, "next_cursor", None)
    return items, cursor if isinstance(cursor, str) and cursor else None


class Delta:
    """A synchronous client of the Delta platform API.

    >>> delta = Delta("http://127.0.0.1:7420", api_key="dk_...")
    >>> from delta_api.api.agents import list_agents
    >>> for agent in delta.paginate(list_agents.sync_detailed):
    ...     print(agent.name)

    Pass generated endpoint functions (`delta_api.api.<tag>.<operation>.sync_detailed`)
    to `call` and `paginate`; the client is supplied for you.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        app_id: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self._auth = _Credentials(self.base_url, api_key)
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            auth=self._auth,
            transport=transport,
            headers=_app_headers(app_id),
        )
        self.client = AuthenticatedClient(base_url=self.base_url, token="")
        self.client.set_httpx_client(self._http)

    def use_app(self, app_id: str | None) -> None:
        """Act in this tenant from now on (`X-App-ID`; None: the credential's own)."""
        self._http.headers.pop("X-App-ID", None)
        self._http.headers.update(_app_headers(app_id))

    def login(self, email: str, password: str, tenant_id: str | None = None) -> None:
        """Start a session (access and refresh tokens, refreshed as needed)."""
        body: dict[str, Any] = {"email": email, "password": password}
        if tenant_id is not None:
            body["tenant_id"] = tenant_id
        response = self._http.post("/v1/auth/login", json=body)
        if response.status_code != 200:
            raise DeltaError.from_http(response.status_code, response.content, response.headers)
        self._auth.api_key = None
        self._auth._take(response)

    def call(self, endpoint: Callable[..., Response[T]], **kwargs: Any) -> T:
        """Call a generated `sync_detailed` endpoint: its parsed answer, or
        `DeltaError`. Rate limits and unavailable servers are retried with
        the same Idempotency-Key."""
        kwargs = _with_key(endpoint, kwargs)
        attempt = 0
        while True:
            try:
                response = endpoint(client=self.client, **kwargs)
            except httpx.TransportError:
                if attempt >= self.retries:
                    raise
            else:
                status = int(response.status_code)
                if status not in RETRIED or attempt >= self.retries:
                    _raise_for(response)
                    return response.parsed  # type: ignore[return-value]
                time.sleep(_retry_after(response, attempt))
            attempt += 1

    def paginate(self, endpoint: Callable[..., Response[Any]], **kwargs: Any) -> Iterator[Any]:
        """Every item of a list, page after page (`cursor` is handled)."""
        cursor: Any = UNSET
        while True:
            items, cursor = _page_parts(self.call(endpoint, cursor=cursor, **kwargs))
            yield from items
            if cursor is None:
                return

    def upload_component(self, data: bytes, *, javascript: bool = False) -> dict[str, Any]:
        """Upload a component (or a JavaScript agent's source)."""
        content_type = "text/javascript" if javascript else "application/wasm"
        response = self._http.post(
            "/v1/components", content=data, headers={"Content-Type": content_type}
        )
        if response.status_code >= 400:
            raise DeltaError.from_http(response.status_code, response.content, response.headers)
        result: dict[str, Any] = response.json()
        return result

    def stream_run_logs(self, run_id: str) -> Iterator[LogEvent]:
        """A run's log as it happens: its lines, then the `end` event."""
        with self._http.stream("GET", f"/v1/runs/{run_id}/logs", timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                raise DeltaError.from_http(response.status_code, response.content, response.headers)
            yield from _parse_sse(response.iter_lines())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Delta:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncDelta:
    """The asynchronous twin of `Delta` (generated `asyncio_detailed` endpoints)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        app_id: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self._auth = _Credentials(self.base_url, api_key)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, auth=self._auth, headers=_app_headers(app_id)
        )
        self.client = AuthenticatedClient(base_url=self.base_url, token="")
        self.client.set_async_httpx_client(self._http)

    async def login(self, email: str, password: str, tenant_id: str | None = None) -> None:
        body: dict[str, Any] = {"email": email, "password": password}
        if tenant_id is not None:
            body["tenant_id"] = tenant_id
        response = await self._http.post("/v1/auth/login", json=body)
        if response.status_code != 200:
            raise DeltaError.from_http(response.status_code, response.content, response.headers)
        self._auth.api_key = None
        self._auth._take(response)

    async def call(self, endpoint: Callable[..., Any], **kwargs: Any) -> Any:
        kwargs = _with_key(endpoint, kwargs)
        attempt = 0
        while True:
            try:
                response = await endpoint(client=self.client, **kwargs)
            except httpx.TransportError:
                if attempt >= self.retries:
                    raise
            else:
                status = int(response.status_code)
                if status not in RETRIED or attempt >= self.retries:
                    _raise_for(response)
                    return response.parsed
                await asyncio.sleep(_retry_after(response, attempt))
            attempt += 1

    async def paginate(self, endpoint: Callable[..., Any], **kwargs: Any) -> AsyncIterator[Any]:
        cursor: Any = UNSET
        while True:
            items, cursor = _page_parts(await self.call(endpoint, cursor=cursor, **kwargs))
            for item in items:
                yield item
            if cursor is None:
                return

    async def stream_run_logs(self, run_id: str) -> AsyncIterator[LogEvent]:
        async with self._http.stream("GET", f"/v1/runs/{run_id}/logs", timeout=None) as response:
            if response.status_code >= 400:
                await response.aread()
                raise DeltaError.from_http(response.status_code, response.content, response.headers)
            parser = _SseParser()
            async for line in response.aiter_lines():
                event = parser.feed(line)
                if event is not None:
                    yield event

    async def aclose(self) -> None:
        await self._http.aclose()


class _SseParser:
    """Server-sent events, line by line (the subset the API sends: event,
    data, id), so that each event is handed on as soon as it ends."""

    def __init__(self) -> None:
        self.event = "message"
        self.data: list[str] = []
        self.id: str | None = None

    def feed(self, line: str) -> LogEvent | None:
        if line == "":
            done = None
            if self.data:
                text = "\n".join(self.data)
                try:
                    parsed: Any = json.loads(text)
                except ValueError:
                    parsed = text
                done = LogEvent(self.event, parsed, self.id)
            self.event, self.data, self.id = "message", [], None
            return done
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            self.event = value
        elif field == "data":
            self.data.append(value)
        elif field == "id":
            self.id = value
        return None


def _parse_sse(lines: Iterator[str]) -> Iterator[LogEvent]:
    parser = _SseParser()
    for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event
    last = parser.feed("")
    if last is not None:
        yield last
