"""The Python client against a real control plane and node (conftest.py)."""

from __future__ import annotations

import uuid

import pytest
from conftest import Server

from delta_api.api.agents import get_agent, list_agents
from delta_api.api.identity import create_api_key, list_api_keys, register
from delta_api.api.runs import create_run, get_run
from delta_api.models import (
    CreateApiKeyRequest,
    CreatedApiKey,
    CreateRun,
    PageApiKeyView,
    RegisterRequest,
    Run,
    RunAccepted,
)
from delta_client import AsyncDelta, Delta, DeltaError


def hello_agent_id(delta: Delta) -> str:
    for agent in delta.paginate(list_agents.sync_detailed):
        if agent.name == "hello-agent":
            return str(agent.id)
    raise AssertionError("hello-agent is not deployed")


def test_an_api_key_lists_agents_and_a_run_answers(server: Server) -> None:
    with Delta(server.url, api_key=server.api_key) as delta:
        agent = hello_agent_id(delta)
        run = delta.call(
            create_run.sync_detailed,
            id=agent,
            body=CreateRun.from_dict({"input": {"name": "Python"}}),
            wait=True,
        )
        assert isinstance(run, Run), run
        assert run.status == "finished", run
        assert "Hello, Python!" in str(run.outcome), run.outcome


def test_pages_are_iterated_to_the_end(server: Server) -> None:
    with Delta(server.url, api_key=server.api_key) as delta:
        names = {f"page-{uuid.uuid4().hex[:8]}" for _ in range(3)}
        for name in names:
            delta.call(
                create_api_key.sync_detailed, body=CreateApiKeyRequest.from_dict({"name": name})
            )
        seen = [key.name for key in delta.paginate(list_api_keys.sync_detailed, limit=1)]
        assert names <= set(seen)
        assert len(seen) == len(set(seen)), "a key was listed twice"


def test_a_retried_mutation_with_its_key_executes_once(server: Server) -> None:
    with Delta(server.url, api_key=server.api_key) as delta:
        key = str(uuid.uuid4())
        body = CreateApiKeyRequest.from_dict({"name": "once"})
        first = delta.call(create_api_key.sync_detailed, body=body, idempotency_key=key)
        again = delta.call(create_api_key.sync_detailed, body=body, idempotency_key=key)
        assert isinstance(first, CreatedApiKey) and isinstance(again, CreatedApiKey)
        assert first.id == again.id
        assert first.key == again.key


def test_errors_carry_the_code_and_the_request_id(server: Server) -> None:
    with Delta(server.url, api_key=server.api_key) as delta:
        with pytest.raises(DeltaError) as caught:
            delta.call(get_agent.sync_detailed, id="agt_nosuchagent")
        assert caught.value.status == 404
        assert caught.value.code == "not_found"
        assert caught.value.request_id
    with Delta(server.url, api_key="dk_wrong_key") as stranger:
        with pytest.raises(DeltaError) as caught:
            stranger.call(list_agents.sync_detailed)
        assert caught.value.status == 401


def test_a_session_logs_in_and_refreshes_itself(server: Server) -> None:
    email = f"py-{uuid.uuid4().hex[:8]}@example.com"
    password = "a long enough password"
    with Delta(server.url) as anonymous:
        anonymous.call(
            register.sync_detailed,
            body=RegisterRequest.from_dict({"email": email, "password": password}),
        )
    with Delta(server.url) as delta:
        delta.login(email, password)
        keys = delta.call(list_api_keys.sync_detailed)
        assert isinstance(keys, PageApiKeyView) and keys.items == []
        # An expired access token is refreshed once, transparently.
        delta._auth.access = "expired-or-garbage"
        keys = delta.call(list_api_keys.sync_detailed)
        assert isinstance(keys, PageApiKeyView) and keys.items == []


def test_a_run_s_log_streams_to_its_end(server: Server) -> None:
    with Delta(server.url, api_key=server.api_key) as delta:
        agent = hello_agent_id(delta)
        accepted = delta.call(
            create_run.sync_detailed, id=agent, body=CreateRun.from_dict({"input": {}})
        )
        assert isinstance(accepted, RunAccepted), accepted
        events = list(delta.stream_run_logs(str(accepted.id)))
        assert events, "no events"
        assert events[-1].event == "end", events
        run = delta.call(get_run.sync_detailed, id=str(accepted.id))
        assert isinstance(run, Run) and run.status == "finished", run


async def test_the_async_client_does_the_same(server: Server) -> None:
    delta = AsyncDelta(server.url, api_key=server.api_key)
    try:
        names = [agent.name async for agent in delta.paginate(list_agents.asyncio_detailed)]
        assert "hello-agent" in names
        with pytest.raises(DeltaError) as caught:
            await delta.call(get_agent.asyncio_detailed, id="agt_nosuchagent")
        assert caught.value.code == "not_found"
    finally:
        await delta.aclose()


def test_x_app_id_names_the_tenant_to_act_in(server: Server) -> None:
    with Delta(server.url, api_key=server.api_key) as delta:
        me = delta._http.get("/v1/me").json()
        delta.use_app(me["tenant_id"])
        assert delta._http.get("/v1/me").json()["tenant_id"] == me["tenant_id"]
        delta.use_app("ten_somebody_else")
        with pytest.raises(DeltaError) as caught:
            delta.call(list_agents.sync_detailed)
        assert caught.value.status == 403
        assert caught.value.code == "app_not_allowed"
