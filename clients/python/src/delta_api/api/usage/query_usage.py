from http import HTTPStatus
from typing import Any

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.error import Error
from ...models.usage_report import UsageReport
from ...types import Unset
import datetime


def _get_kwargs(
    *,
    from_: datetime.date | Unset = UNSET,
    to: datetime.date | Unset = UNSET,
    agent_id: str | Unset = UNSET,
    user_id: str | Unset = UNSET,
    kind: str | Unset = UNSET,
    group_by: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(x_app_id, Unset):
        headers["X-App-ID"] = x_app_id

    params: dict[str, Any] = {}

    json_from_: str | Unset = UNSET
    if not isinstance(from_, Unset):
        json_from_ = from_.isoformat()
    params["from"] = json_from_

    json_to: str | Unset = UNSET
    if not isinstance(to, Unset):
        json_to = to.isoformat()
    params["to"] = json_to

    params["agent_id"] = agent_id

    params["user_id"] = user_id

    params["kind"] = kind

    params["group_by"] = group_by

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/v1/usage",
        "params": params,
    }

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Error | UsageReport | None:
    if response.status_code == 200:
        response_200 = UsageReport.from_dict(response.json())

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
) -> Response[Error | UsageReport]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    from_: datetime.date | Unset = UNSET,
    to: datetime.date | Unset = UNSET,
    agent_id: str | Unset = UNSET,
    user_id: str | Unset = UNSET,
    kind: str | Unset = UNSET,
    group_by: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> Response[Error | UsageReport]:
    """Usage of the caller's tenant, summed over days and grouped as asked.

    Args:
        from_ (datetime.date | Unset):
        to (datetime.date | Unset):
        agent_id (str | Unset):
        user_id (str | Unset):
        kind (str | Unset):
        group_by (str | Unset):
        x_app_id (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Error | UsageReport]
    """

    kwargs = _get_kwargs(
        from_=from_,
        to=to,
        agent_id=agent_id,
        user_id=user_id,
        kind=kind,
        group_by=group_by,
        x_app_id=x_app_id,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    from_: datetime.date | Unset = UNSET,
    to: datetime.date | Unset = UNSET,
    agent_id: str | Unset = UNSET,
    user_id: str | Unset = UNSET,
    kind: str | Unset = UNSET,
    group_by: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> Error | UsageReport | None:
    """Usage of the caller's tenant, summed over days and grouped as asked.

    Args:
        from_ (datetime.date | Unset):
        to (datetime.date | Unset):
        agent_id (str | Unset):
        user_id (str | Unset):
        kind (str | Unset):
        group_by (str | Unset):
        x_app_id (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Error | UsageReport
    """

    return sync_detailed(
        client=client,
        from_=from_,
        to=to,
        agent_id=agent_id,
        user_id=user_id,
        kind=kind,
        group_by=group_by,
        x_app_id=x_app_id,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    from_: datetime.date | Unset = UNSET,
    to: datetime.date | Unset = UNSET,
    agent_id: str | Unset = UNSET,
    user_id: str | Unset = UNSET,
    kind: str | Unset = UNSET,
    group_by: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> Response[Error | UsageReport]:
    """Usage of the caller's tenant, summed over days and grouped as asked.

    Args:
        from_ (datetime.date | Unset):
        to (datetime.date | Unset):
        agent_id (str | Unset):
        user_id (str | Unset):
        kind (str | Unset):
        group_by (str | Unset):
        x_app_id (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Error | UsageReport]
    """

    kwargs = _get_kwargs(
        from_=from_,
        to=to,
        agent_id=agent_id,
        user_id=user_id,
        kind=kind,
        group_by=group_by,
        x_app_id=x_app_id,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    from_: datetime.date | Unset = UNSET,
    to: datetime.date | Unset = UNSET,
    agent_id: str | Unset = UNSET,
    user_id: str | Unset = UNSET,
    kind: str | Unset = UNSET,
    group_by: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> Error | UsageReport | None:
    """Usage of the caller's tenant, summed over days and grouped as asked.

    Args:
        from_ (datetime.date | Unset):
        to (datetime.date | Unset):
        agent_id (str | Unset):
        user_id (str | Unset):
        kind (str | Unset):
        group_by (str | Unset):
        x_app_id (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Error | UsageReport
    """

    return (
        await asyncio_detailed(
            client=client,
            from_=from_,
            to=to,
            agent_id=agent_id,
            user_id=user_id,
            kind=kind,
            group_by=group_by,
            x_app_id=x_app_id,
        )
    ).parsed
