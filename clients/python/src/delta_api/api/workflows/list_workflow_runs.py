from http import HTTPStatus
from typing import Any

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.error import Error
from ...models.page_workflow_run import PageWorkflowRun
from ...types import Unset


def _get_kwargs(
    *,
    limit: int | Unset = UNSET,
    cursor: str | Unset = UNSET,
    workflow_id: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(x_app_id, Unset):
        headers["X-App-ID"] = x_app_id

    params: dict[str, Any] = {}

    params["limit"] = limit

    params["cursor"] = cursor

    params["workflow_id"] = workflow_id

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/v1/workflow-runs",
        "params": params,
    }

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Error | PageWorkflowRun | None:
    if response.status_code == 200:
        response_200 = PageWorkflowRun.from_dict(response.json())

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
) -> Response[Error | PageWorkflowRun]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    limit: int | Unset = UNSET,
    cursor: str | Unset = UNSET,
    workflow_id: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> Response[Error | PageWorkflowRun]:
    """List this tenant's workflow runs, oldest first (without their steps).

    Args:
        limit (int | Unset):
        cursor (str | Unset):
        workflow_id (str | Unset):
        x_app_id (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Error | PageWorkflowRun]
    """

    kwargs = _get_kwargs(
        limit=limit,
        cursor=cursor,
        workflow_id=workflow_id,
        x_app_id=x_app_id,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    limit: int | Unset = UNSET,
    cursor: str | Unset = UNSET,
    workflow_id: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> Error | PageWorkflowRun | None:
    """List this tenant's workflow runs, oldest first (without their steps).

    Args:
        limit (int | Unset):
        cursor (str | Unset):
        workflow_id (str | Unset):
        x_app_id (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Error | PageWorkflowRun
    """

    return sync_detailed(
        client=client,
        limit=limit,
        cursor=cursor,
        workflow_id=workflow_id,
        x_app_id=x_app_id,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    limit: int | Unset = UNSET,
    cursor: str | Unset = UNSET,
    workflow_id: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> Response[Error | PageWorkflowRun]:
    """List this tenant's workflow runs, oldest first (without their steps).

    Args:
        limit (int | Unset):
        cursor (str | Unset):
        workflow_id (str | Unset):
        x_app_id (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Error | PageWorkflowRun]
    """

    kwargs = _get_kwargs(
        limit=limit,
        cursor=cursor,
        workflow_id=workflow_id,
        x_app_id=x_app_id,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    limit: int | Unset = UNSET,
    cursor: str | Unset = UNSET,
    workflow_id: str | Unset = UNSET,
    x_app_id: str | Unset = UNSET,
) -> Error | PageWorkflowRun | None:
    """List this tenant's workflow runs, oldest first (without their steps).

    Args:
        limit (int | Unset):
        cursor (str | Unset):
        workflow_id (str | Unset):
        x_app_id (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Error | PageWorkflowRun
    """

    return (
        await asyncio_detailed(
            client=client,
            limit=limit,
            cursor=cursor,
            workflow_id=workflow_id,
            x_app_id=x_app_id,
        )
    ).parsed
