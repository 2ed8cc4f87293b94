from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.error import Error
from ...models.hook_accepted import HookAccepted
from ...models.run import Run
from ...types import Unset


def _get_kwargs(
    id: str,
    *,
    body: Any,
    wait: bool | Unset = UNSET,
    x_delta_signature: str,
    idempotency_key: str | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    headers["X-Delta-Signature"] = x_delta_signature

    if not isinstance(idempotency_key, Unset):
        headers["Idempotency-Key"] = idempotency_key

    params: dict[str, Any] = {}

    params["wait"] = wait

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/v1/hooks/{id}".format(
            id=quote(str(id), safe=""),
        ),
        "params": params,
    }

    _kwargs["json"] = body

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Error | HookAccepted | Run | None:
    if response.status_code == 200:
        response_200 = Run.from_dict(response.json())

        return response_200

    if response.status_code == 202:
        response_202 = HookAccepted.from_dict(response.json())

        return response_202

    if response.status_code == 400:
        response_400 = Error.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = Error.from_dict(response.json())

        return response_401

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
) -> Response[Error | HookAccepted | Run]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    id: str,
    *,
    client: AuthenticatedClient | Client,
    body: Any,
    wait: bool | Unset = UNSET,
    x_delta_signature: str,
    idempotency_key: str | Unset = UNSET,
) -> Response[Error | HookAccepted | Run]:
    """Deliver to an inbound webhook: a signed request that starts a run of
    its agent with the request as input. No bearer token: the signature
    `X-Delta-Signature: t=<unix secs>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
    authenticates it.

    Args:
        id (str):
        wait (bool | Unset):
        x_delta_signature (str):
        idempotency_key (str | Unset):
        body (Any):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Error | HookAccepted | Run]
    """

    kwargs = _get_kwargs(
        id=id,
        body=body,
        wait=wait,
        x_delta_signature=x_delta_signature,
        idempotency_key=idempotency_key,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    id: str,
    *,
    client: AuthenticatedClient | Client,
    body: Any,
    wait: bool | Unset = UNSET,
    x_delta_signature: str,
    idempotency_key: str | Unset = UNSET,
) -> Error | HookAccepted | Run | None:
    """Deliver to an inbound webhook: a signed request that starts a run of
    its agent with the request as input. No bearer token: the signature
    `X-Delta-Signature: t=<unix secs>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
    authenticates it.

    Args:
        id (str):
        wait (bool | Unset):
        x_delta_signature (str):
        idempotency_key (str | Unset):
        body (Any):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Error | HookAccepted | Run
    """

    return sync_detailed(
        id=id,
        client=client,
        body=body,
        wait=wait,
        x_delta_signature=x_delta_signature,
        idempotency_key=idempotency_key,
    ).parsed


async def asyncio_detailed(
    id: str,
    *,
    client: AuthenticatedClient | Client,
    body: Any,
    wait: bool | Unset = UNSET,
    x_delta_signature: str,
    idempotency_key: str | Unset = UNSET,
) -> Response[Error | HookAccepted | Run]:
    """Deliver to an inbound webhook: a signed request that starts a run of
    its agent with the request as input. No bearer token: the signature
    `X-Delta-Signature: t=<unix secs>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
    authenticates it.

    Args:
        id (str):
        wait (bool | Unset):
        x_delta_signature (str):
        idempotency_key (str | Unset):
        body (Any):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Error | HookAccepted | Run]
    """

    kwargs = _get_kwargs(
        id=id,
        body=body,
        wait=wait,
        x_delta_signature=x_delta_signature,
        idempotency_key=idempotency_key,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    id: str,
    *,
    client: AuthenticatedClient | Client,
    body: Any,
    wait: bool | Unset = UNSET,
    x_delta_signature: str,
    idempotency_key: str | Unset = UNSET,
) -> Error | HookAccepted | Run | None:
    """Deliver to an inbound webhook: a signed request that starts a run of
    its agent with the request as input. No bearer token: the signature
    `X-Delta-Signature: t=<unix secs>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
    authenticates it.

    Args:
        id (str):
        wait (bool | Unset):
        x_delta_signature (str):
        idempotency_key (str | Unset):
        body (Any):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Error | HookAccepted | Run
    """

    return (
        await asyncio_detailed(
            id=id,
            client=client,
            body=body,
            wait=wait,
            x_delta_signature=x_delta_signature,
            idempotency_key=idempotency_key,
        )
    ).parsed
