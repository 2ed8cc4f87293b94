from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.error import Error
from ...models.member_view import MemberView
from ...models.role_request import RoleRequest
from ...types import Unset


def _get_kwargs(
    user_id: str,
    *,
    body: RoleRequest,
    idempotency_key: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(idempotency_key, Unset):
        headers["Idempotency-Key"] = idempotency_key

    if not isinstance(x_app_id, Unset):
        headers["X-App-ID"] = x_app_id

    _kwargs: dict[str, Any] = {
        "method": "patch",
        "url": "/v1/tenants/current/members/{user_id}".format(
            user_id=quote(str(user_id), safe=""),
        ),
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Error | MemberView | None:
    if response.status_code == 200:
        response_200 = MemberView.from_dict(response.json())

        return response_200

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

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[Error | MemberView]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    user_id: str,
    *,
    client: AuthenticatedClient,
    body: RoleRequest,
    idempotency_key: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> Response[Error | MemberView]:
    """Change a member's role. Admins move non-owners between member and
    admin; only owners change an owner or grant owner; the last owner
    cannot be demoted (409 `last_owner`).

    Args:
        user_id (str):
        idempotency_key (str | Unset):
        x_app_id (str | Unset):
        body (RoleRequest): `PATCH /v1/tenants/current/members/{user_id}`.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Error | MemberView]
    """

    kwargs = _get_kwargs(
        user_id=user_id,
        body=body,
        idempotency_key=idempotency_key,
        x_app_id=x_app_id,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    user_id: str,
    *,
    client: AuthenticatedClient,
    body: RoleRequest,
    idempotency_key: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> Error | MemberView | None:
    """Change a member's role. Admins move non-owners between member and
    admin; only owners change an owner or grant owner; the last owner
    cannot be demoted (409 `last_owner`).

    Args:
        user_id (str):
        idempotency_key (str | Unset):
        x_app_id (str | Unset):
        body (RoleRequest): `PATCH /v1/tenants/current/members/{user_id}`.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Error | MemberView
    """

    return sync_detailed(
        user_id=user_id,
        client=client,
        body=body,
        idempotency_key=idempotency_key,
        x_app_id=x_app_id,
    ).parsed


async def asyncio_detailed(
    user_id: str,
    *,
    client: AuthenticatedClient,
    body: RoleRequest,
    idempotency_key: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> Response[Error | MemberView]:
    """Change a member's role. Admins move non-owners between member and
    admin; only owners change an owner or grant owner; the last owner
    cannot be demoted (409 `last_owner`).

    Args:
        user_id (str):
        idempotency_key (str | Unset):
        x_app_id (str | Unset):
        body (RoleRequest): `PATCH /v1/tenants/current/members/{user_id}`.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Error | MemberView]
    """

    kwargs = _get_kwargs(
        user_id=user_id,
        body=body,
        idempotency_key=idempotency_key,
        x_app_id=x_app_id,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    user_id: str,
    *,
    client: AuthenticatedClient,
    body: RoleRequest,
    idempotency_key: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> Error | MemberView | None:
    """Change a member's role. Admins move non-owners between member and
    admin; only owners change an owner or grant owner; the last owner
    cannot be demoted (409 `last_owner`).

    Args:
        user_id (str):
        idempotency_key (str | Unset):
        x_app_id (str | Unset):
        body (RoleRequest): `PATCH /v1/tenants/current/members/{user_id}`.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Error | MemberView
    """

    return (
        await asyncio_detailed(
            user_id=user_id,
            client=client,
            body=body,
            idempotency_key=idempotency_key,
            x_app_id=x_app_id,
        )
    ).parsed
