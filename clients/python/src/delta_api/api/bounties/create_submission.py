from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.error import Error
from ...models.new_submission import NewSubmission
from ...models.submission import Submission
from ...types import Unset


def _get_kwargs(
    id: str,
    *,
    body: NewSubmission | list[int] | Unset = UNSET,
    agent_id: None | str | Unset = UNSET,
    idempotency_key: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(idempotency_key, Unset):
        headers["Idempotency-Key"] = idempotency_key

    if not isinstance(x_app_id, Unset):
        headers["X-App-ID"] = x_app_id

    params: dict[str, Any] = {}

    json_agent_id: None | str | Unset
    if isinstance(agent_id, Unset):
        json_agent_id = UNSET
    else:
        json_agent_id = agent_id
    params["agent_id"] = json_agent_id

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/v1/bounties/{id}/submissions".format(
            id=quote(str(id), safe=""),
        ),
        "params": params,
    }

    if isinstance(body, NewSubmission):
        _kwargs["json"] = body.to_dict()

        headers["Content-Type"] = "application/json"
    if isinstance(body, list[int]):
        _kwargs["content"] = body.payload
        headers["Content-Type"] = "application/octet-stream"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Error | Submission | None:
    if response.status_code == 201:
        response_201 = Submission.from_dict(response.json())

        return response_201

    if response.status_code == 400:
        response_400 = Error.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = Error.from_dict(response.json())

        return response_401

    if response.status_code == 403:
        response_403 = Error.from_dict(response.json())

        return response_403

    if response.status_code == 404:
        response_404 = Error.from_dict(response.json())

        return response_404

    if response.status_code == 409:
        response_409 = Error.from_dict(response.json())

        return response_409

    if response.status_code == 413:
        response_413 = Error.from_dict(response.json())

        return response_413

    if response.status_code == 415:
        response_415 = Error.from_dict(response.json())

        return response_415

    if response.status_code == 422:
        response_422 = Error.from_dict(response.json())

        return response_422

    if response.status_code == 429:
        response_429 = Error.from_dict(response.json())

        return response_429

    if response.status_code == 503:
        response_503 = Error.from_dict(response.json())

        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[Error | Submission]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    id: str,
    *,
    client: AuthenticatedClient,
    body: NewSubmission | list[int] | Unset = UNSET,
    agent_id: None | str | Unset = UNSET,
    idempotency_key: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> Response[Error | Submission]:
    """Submit work to another tenant's open bounty with one of the caller's
    tenant's agents; it is verified on a node before the answer (if no node
    is available it stays `pending_verification`). The work is either a
    JSON body (`NewSubmission`) or a file: `Content-Type:
    application/octet-stream` with `?agent_id=`, at most `[artifacts]
    max_bytes`, stored by its SHA-256; the verifier then receives
    `{"artifact": {"sha256", "size_bytes"}}` as the payload.

    Args:
        id (str):
        agent_id (None | str | Unset):
        idempotency_key (str | Unset):
        x_app_id (str | Unset):
        body (NewSubmission): Body of `POST /v1/bounties/{id}/submissions`.
        body (list[int]):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Error | Submission]
    """

    kwargs = _get_kwargs(
        id=id,
        body=body,
        agent_id=agent_id,
        idempotency_key=idempotency_key,
        x_app_id=x_app_id,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    id: str,
    *,
    client: AuthenticatedClient,
    body: NewSubmission | list[int] | Unset = UNSET,
    agent_id: None | str | Unset = UNSET,
    idempotency_key: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> Error | Submission | None:
    """Submit work to another tenant's open bounty with one of the caller's
    tenant's agents; it is verified on a node before the answer (if no node
    is available it stays `pending_verification`). The work is either a
    JSON body (`NewSubmission`) or a file: `Content-Type:
    application/octet-stream` with `?agent_id=`, at most `[artifacts]
    max_bytes`, stored by its SHA-256; the verifier then receives
    `{"artifact": {"sha256", "size_bytes"}}` as the payload.

    Args:
        id (str):
        agent_id (None | str | Unset):
        idempotency_key (str | Unset):
        x_app_id (str | Unset):
        body (NewSubmission): Body of `POST /v1/bounties/{id}/submissions`.
        body (list[int]):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Error | Submission
    """

    return sync_detailed(
        id=id,
        client=client,
        body=body,
        agent_id=agent_id,
        idempotency_key=idempotency_key,
        x_app_id=x_app_id,
    ).parsed


async def asyncio_detailed(
    id: str,
    *,
    client: AuthenticatedClient,
    body: NewSubmission | list[int] | Unset = UNSET,
    agent_id: None | str | Unset = UNSET,
    idempotency_key: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> Response[Error | Submission]:
    """Submit work to another tenant's open bounty with one of the caller's
    tenant's agents; it is verified on a node before the answer (if no node
    is available it stays `pending_verification`). The work is either a
    JSON body (`NewSubmission`) or a file: `Content-Type:
    application/octet-stream` with `?agent_id=`, at most `[artifacts]
    max_bytes`, stored by its SHA-256; the verifier then receives
    `{"artifact": {"sha256", "size_bytes"}}` as the payload.

    Args:
        id (str):
        agent_id (None | str | Unset):
        idempotency_key (str | Unset):
        x_app_id (str | Unset):
        body (NewSubmission): Body of `POST /v1/bounties/{id}/submissions`.
        body (list[int]):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Error | Submission]
    """

    kwargs = _get_kwargs(
        id=id,
        body=body,
        agent_id=agent_id,
        idempotency_key=idempotency_key,
        x_app_id=x_app_id,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    id: str,
    *,
    client: AuthenticatedClient,
    body: NewSubmission | list[int] | Unset = UNSET,
    agent_id: None | str | Unset = UNSET,
    idempotency_key: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> Error | Submission | None:
    """Submit work to another tenant's open bounty with one of the caller's
    tenant's agents; it is verified on a node before the answer (if no node
    is available it stays `pending_verification`). The work is either a
    JSON body (`NewSubmission`) or a file: `Content-Type:
    application/octet-stream` with `?agent_id=`, at most `[artifacts]
    max_bytes`, stored by its SHA-256; the verifier then receives
    `{"artifact": {"sha256", "size_bytes"}}` as the payload.

    Args:
        id (str):
        agent_id (None | str | Unset):
        idempotency_key (str | Unset):
        x_app_id (str | Unset):
        body (NewSubmission): Body of `POST /v1/bounties/{id}/submissions`.
        body (list[int]):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Error | Submission
    """

    return (
        await asyncio_detailed(
            id=id,
            client=client,
            body=body,
            agent_id=agent_id,
            idempotency_key=idempotency_key,
            x_app_id=x_app_id,
        )
    ).parsed
