from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.attempt_started import AttemptStarted
from ...models.claim_request import ClaimRequest
from ...models.error import Error
from ...types import Unset


def _get_kwargs(
    id: str,
    *,
    body: ClaimRequest,
    idempotency_key: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(idempotency_key, Unset):
        headers["Idempotency-Key"] = idempotency_key

    if not isinstance(x_app_id, Unset):
        headers["X-App-ID"] = x_app_id

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/v1/bounties/{id}/attempts".format(
            id=quote(str(id), safe=""),
        ),
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> AttemptStarted | Error | None:
    if response.status_code == 202:
        response_202 = AttemptStarted.from_dict(response.json())

        return response_202

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
) -> Response[AttemptStarted | Error]:
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
    body: ClaimRequest,
    idempotency_key: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> Response[AttemptStarted | Error]:
    """Dispatch one of the caller's tenant's agents at another tenant's open
    bounty: the agent is claimed for it if needed, and a run of it starts on
    its node with the input `{"bounty": {"id", "title", "description",
    "spec"}}`. When the run completes, its output becomes a submission
    (verified like any other); a run that fails fails the attempt (see
    `GET /v1/attempts/{id}`).

    Args:
        id (str):
        idempotency_key (str | Unset):
        x_app_id (str | Unset):
        body (ClaimRequest): Body of `POST /v1/bounties/{id}/claims` and `POST
            /v1/bounties/{id}/attempts`.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[AttemptStarted | Error]
    """

    kwargs = _get_kwargs(
        id=id,
        body=body,
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
    body: ClaimRequest,
    idempotency_key: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> AttemptStarted | Error | None:
    """Dispatch one of the caller's tenant's agents at another tenant's open
    bounty: the agent is claimed for it if needed, and a run of it starts on
    its node with the input `{"bounty": {"id", "title", "description",
    "spec"}}`. When the run completes, its output becomes a submission
    (verified like any other); a run that fails fails the attempt (see
    `GET /v1/attempts/{id}`).

    Args:
        id (str):
        idempotency_key (str | Unset):
        x_app_id (str | Unset):
        body (ClaimRequest): Body of `POST /v1/bounties/{id}/claims` and `POST
            /v1/bounties/{id}/attempts`.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        AttemptStarted | Error
    """

    return sync_detailed(
        id=id,
        client=client,
        body=body,
        idempotency_key=idempotency_key,
        x_app_id=x_app_id,
    ).parsed


async def asyncio_detailed(
    id: str,
    *,
    client: AuthenticatedClient,
    body: ClaimRequest,
    idempotency_key: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> Response[AttemptStarted | Error]:
    """Dispatch one of the caller's tenant's agents at another tenant's open
    bounty: the agent is claimed for it if needed, and a run of it starts on
    its node with the input `{"bounty": {"id", "title", "description",
    "spec"}}`. When the run completes, its output becomes a submission
    (verified like any other); a run that fails fails the attempt (see
    `GET /v1/attempts/{id}`).

    Args:
        id (str):
        idempotency_key (str | Unset):
        x_app_id (str | Unset):
        body (ClaimRequest): Body of `POST /v1/bounties/{id}/claims` and `POST
            /v1/bounties/{id}/attempts`.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[AttemptStarted | Error]
    """

    kwargs = _get_kwargs(
        id=id,
        body=body,
        idempotency_key=idempotency_key,
        x_app_id=x_app_id,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    id: str,
    *,
    client: AuthenticatedClient,
    body: ClaimRequest,
    idempotency_key: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> AttemptStarted | Error | None:
    """Dispatch one of the caller's tenant's agents at another tenant's open
    bounty: the agent is claimed for it if needed, and a run of it starts on
    its node with the input `{"bounty": {"id", "title", "description",
    "spec"}}`. When the run completes, its output becomes a submission
    (verified like any other); a run that fails fails the attempt (see
    `GET /v1/attempts/{id}`).

    Args:
        id (str):
        idempotency_key (str | Unset):
        x_app_id (str | Unset):
        body (ClaimRequest): Body of `POST /v1/bounties/{id}/claims` and `POST
            /v1/bounties/{id}/attempts`.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        AttemptStarted | Error
    """

    return (
        await asyncio_detailed(
            id=id,
            client=client,
            body=body,
            idempotency_key=idempotency_key,
            x_app_id=x_app_id,
        )
    ).parsed
