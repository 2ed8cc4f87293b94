from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote

import httpx

from ...client import AuthenticatedClient, Client
from ...types import Response, UNSET
from ... import errors

from ...models.error import Error
from ...types import Unset


def _get_kwargs(
    sha256: str,
    *,
    expires: int | None | Unset = UNSET,
    sig: None | str | Unset = UNSET,
) -> dict[str, Any]:
    params: dict[str, Any] = {}

    json_expires: int | None | Unset
    if isinstance(expires, Unset):
        json_expires = UNSET
    else:
        json_expires = expires
    params["expires"] = json_expires

    json_sig: None | str | Unset
    if isinstance(sig, Unset):
        json_sig = UNSET
    else:
        json_sig = sig
    params["sig"] = json_sig

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/v1/artifacts/{sha256}".format(
            sha256=quote(str(sha256), safe=""),
        ),
        "params": params,
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Any | Error | None:
    if response.status_code == 200:
        response_200 = cast(Any, None)
        return response_200

    if response.status_code == 400:
        response_400 = Error.from_dict(response.json())

        return response_400

    if response.status_code == 403:
        response_403 = Error.from_dict(response.json())

        return response_403

    if response.status_code == 404:
        response_404 = Error.from_dict(response.json())

        return response_404

    if response.status_code == 410:
        response_410 = Error.from_dict(response.json())

        return response_410

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
) -> Response[Any | Error]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    sha256: str,
    *,
    client: AuthenticatedClient | Client,
    expires: int | None | Unset = UNSET,
    sig: None | str | Unset = UNSET,
) -> Response[Any | Error]:
    """An artifact's bytes, through a signed URL (no other authentication: the
    signature is the permission).

    Args:
        sha256 (str):
        expires (int | None | Unset):
        sig (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | Error]
    """

    kwargs = _get_kwargs(
        sha256=sha256,
        expires=expires,
        sig=sig,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    sha256: str,
    *,
    client: AuthenticatedClient | Client,
    expires: int | None | Unset = UNSET,
    sig: None | str | Unset = UNSET,
) -> Any | Error | None:
    """An artifact's bytes, through a signed URL (no other authentication: the
    signature is the permission).

    Args:
        sha256 (str):
        expires (int | None | Unset):
        sig (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | Error
    """

    return sync_detailed(
        sha256=sha256,
        client=client,
        expires=expires,
        sig=sig,
    ).parsed


async def asyncio_detailed(
    sha256: str,
    *,
    client: AuthenticatedClient | Client,
    expires: int | None | Unset = UNSET,
    sig: None | str | Unset = UNSET,
) -> Response[Any | Error]:
    """An artifact's bytes, through a signed URL (no other authentication: the
    signature is the permission).

    Args:
        sha256 (str):
        expires (int | None | Unset):
        sig (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | Error]
    """

    kwargs = _get_kwargs(
        sha256=sha256,
        expires=expires,
        sig=sig,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    sha256: str,
    *,
    client: AuthenticatedClient | Client,
    expires: int | None | Unset = UNSET,
    sig: None | str | Unset = UNSET,
) -> Any | Error | None:
    """An artifact's bytes, through a signed URL (no other authentication: the
    signature is the permission).

    Args:
        sha256 (str):
        expires (int | None | Unset):
        sig (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | Error
    """

    return (
        await asyncio_detailed(
            sha256=sha256,
            client=client,
            expires=expires,
            sig=sig,
        )
    ).parsed
