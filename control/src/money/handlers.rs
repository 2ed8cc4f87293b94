//! The ledger's HTTP API: operator top-ups and balances.

use axum::Json;
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use delta_http::{ApiError, JsonBody, RequestId};
use delta_money::{Account, Applied, Transfer, TransferError, TransferKind};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit;
use crate::auth::{Principal, Role};
use crate::db::now_ms;
use crate::state::AppState;

use super::store::*;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(top_up))
        .routes(routes!(totals_handler))
        .routes(routes!(my_accounts))
}

/// How a refused ledger operation answers: insufficient funds 409
/// `insufficient_funds`; a reused transfer id 409
/// `exists_with_different_fields`; a settled escrow 409 with its code;
/// anything else the caller sent 422 with the rule's code.
pub fn money_error(e: MoneyError) -> ApiError {
    match e {
        MoneyError::Refused(t) => {
            let status = match t {
                TransferError::ExceedsCredits { .. }
                | TransferError::ExistsWithDifferentFields(_)
                | TransferError::PendingAlreadyPosted(_)
                | TransferError::PendingAlreadyVoided(_) => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            ApiError::new(status, t.code(), t.to_string())
        }
        e => ApiError::internal(e),
    }
}

/// Body of `POST /v1/operator/ledger/topups`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopUp {
    /// The tenant credited.
    pub tenant_id: String,
    /// Minor units (> 0).
    #[schema(minimum = 1)]
    pub amount_minor: i64,
    /// ISO 4217 code, e.g. `EUR`.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
    /// The transfer's id, chosen by the caller: a retry with the same id
    /// and fields is answered as the first; default: a new id.
    pub transfer_id: Option<String>,
}

/// An account as its holder sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    /// Its id.
    pub id: String,
    /// `tenant`, `escrow`, `platform` or `external`.
    pub kind: String,
    /// ISO 4217 code.
    pub currency: String,
    /// `credits_posted - debits_posted`.
    pub balance_minor: i64,
    /// What can be spent: the balance minus pending debits.
    pub available_minor: i64,
    /// Reserved by pending debits (bounties being funded).
    pub debits_pending: i64,
    /// Posted debits.
    pub debits_posted: i64,
    /// Reserved by pending credits.
    pub credits_pending: i64,
    /// Posted credits.
    pub credits_posted: i64,
}

impl AccountView {
    /// The view of `account`.
    pub fn of(kind: String, a: &Account) -> Self {
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Self {
            id: a.id.clone(),
            kind,
            currency: a.ledger.clone(),
            balance_minor: i64::try_from(a.balance()).unwrap_or(i64::MAX),
            available_minor: i(a.available()),
            debits_pending: i(a.debits_pending),
            debits_posted: i(a.debits_posted),
            credits_pending: i(a.credits_pending),
            credits_posted: i(a.credits_posted),
        }
    }
}

/// Credit a tenant's balance from the currency's `external` account
/// (platform operators only: this is money entering the system).
#[utoipa::path(
    post,
    path = "/v1/operator/ledger/topups",
    tag = "ledger",
    request_body = TopUp,
    responses(
        (status = 201, description = "Credited", body = AccountView),
        (status = 200, description = "A retry of a stored top-up", body = AccountView),
        (status = 403, description = "`operator_only`"),
        (status = 404, description = "No such tenant"),
        (status = 409, description = "`exists_with_different_fields`"),
        (status = 422, description = "`invalid`: amount or currency"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn top_up(
    State(state): State<AppState>,
    principal: Principal,
    Extension(rid): Extension<RequestId>,
    JsonBody(body): JsonBody<TopUp>,
) -> Result<Response, ApiError> {
    principal.require_operator()?;
    principal.require_scope("tenant:admin")?;
    if body.amount_minor <= 0 {
        return Err(ApiError::invalid("amount_minor must be greater than zero"));
    }
    if !delta_money::valid_currency(&body.currency) {
        return Err(ApiError::invalid(
            "currency must be an ISO 4217 code (three upper-case letters)",
        ));
    }
    let exists = sqlx::query("SELECT 1 FROM tenants WHERE id = $1")
        .bind(&body.tenant_id)
        .fetch_optional(state.db.pool())
        .await
        .map_err(ApiError::internal)?;
    if exists.is_none() {
        return Err(ApiError::not_found("tenant"));
    }
    let transfer_id = body
        .transfer_id
        .clone()
        .unwrap_or_else(|| crate::db::new_id("topup"));
    let now = now_ms();
    let mut w = Write::begin(&state.db).await.map_err(ApiError::internal)?;
    let result = async {
        let c = w.conn();
        let external = ensure_account(c, AccountKind::External, None, &body.currency, now).await?;
        let tenant = ensure_account(
            c,
            AccountKind::Tenant,
            Some(&body.tenant_id),
            &body.currency,
            now,
        )
        .await?;
        let t = Transfer {
            id: transfer_id.clone(),
            debit_account_id: external,
            credit_account_id: tenant,
            amount: body.amount_minor.unsigned_abs(),
            ledger: body.currency.clone(),
            kind: TransferKind::SinglePhase,
        };
        apply_transfers(c, &[t], now).await
    }
    .await;
    let applied = match result {
        Ok(applied) => applied,
        Err(e) => {
            w.abandon().await;
            return Err(money_error(e));
        }
    };
    let created = applied.first() == Some(&Applied::Created);
    if created {
        audit::record_in(
            w.conn(),
            Some(&body.tenant_id),
            Some(&principal.user_id),
            "ledger_top_up",
            json!({ "transfer_id": transfer_id, "amount_minor": body.amount_minor,
                    "currency": body.currency }),
            Some(&rid.0),
        )
        .await?;
    }
    w.commit().await.map_err(ApiError::internal)?;
    let view = tenant_accounts(&state.db, &body.tenant_id)
        .await
        .map_err(money_error)?
        .into_iter()
        .find(|(kind, a)| kind == "tenant" && a.ledger == body.currency)
        .map(|(kind, a)| AccountView::of(kind, &a))
        .ok_or_else(|| ApiError::internal("the credited account vanished"))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

/// Query of `GET /v1/operator/ledger/totals`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TotalsQuery {
    /// ISO 4217 code.
    pub currency: String,
}

/// The ledger's sums over every account of a currency (operators only):
/// both are zero in a sound ledger.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Totals {
    /// The currency.
    pub currency: String,
    /// Σ (credits_posted - debits_posted).
    pub posted_minor: i64,
    /// Σ (credits_pending - debits_pending).
    pub pending_minor: i64,
}

/// The conservation check: Σ balances and Σ pending amounts of a currency.
#[utoipa::path(
    get,
    path = "/v1/operator/ledger/totals",
    tag = "ledger",
    params(TotalsQuery),
    responses(
        (status = 200, description = "The sums (0 and 0 when sound)", body = Totals),
        (status = 403, description = "`operator_only`"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn totals_handler(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<TotalsQuery>,
) -> Result<Json<Totals>, ApiError> {
    principal.require_operator()?;
    let (posted, pending) = totals(&state.db, &q.currency).await.map_err(money_error)?;
    Ok(Json(Totals {
        currency: q.currency,
        posted_minor: posted,
        pending_minor: pending,
    }))
}

/// The caller's tenant's accounts (balance and escrow, every currency).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accounts {
    /// The accounts, by id.
    pub items: Vec<AccountView>,
}

/// The caller's tenant's balances.
#[utoipa::path(
    get,
    path = "/v1/ledger/accounts",
    tag = "ledger",
    responses((status = 200, description = "The tenant's accounts", body = Accounts)),
    security(("bearer" = []))
)]
pub(super) async fn my_accounts(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Accounts>, ApiError> {
    principal.require_role(Role::Member)?;
    principal.require_scope("bounties:read")?;
    let items = tenant_accounts(&state.db, &principal.tenant_id)
        .await
        .map_err(money_error)?
        .into_iter()
        .map(|(kind, a)| AccountView::of(kind, &a))
        .collect();
    Ok(Json(Accounts { items }))
}
