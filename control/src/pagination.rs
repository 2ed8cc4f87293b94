//! Cursor pagination for every list: `?limit=N&cursor=C` answers
//! `{ "items": [...], "next_cursor": C? }`.
//!
//! Lists are ordered by `(created_at_ms, id)`; the cursor is that pair of the
//! last item, opaque to clients (base64url of JSON). Keyset pagination stays
//! correct while rows are inserted and costs one index range scan per page.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use delta_http::ApiError;

/// Default and largest page sizes.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page a client may ask for.
pub const MAX_LIMIT: u32 = 200;

/// Query parameters of a list.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page (1-200, default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Where a page starts: after this `(created_at_ms, id)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Creation time of the last item seen.
    pub t: i64,
    /// Id of the last item seen.
    pub id: String,
}

impl PageQuery {
    /// The page size, clamped.
    pub fn limit(&self) -> u32 {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
    }

    /// The decoded cursor; a malformed one is a 400.
    pub fn cursor(&self) -> Result<Option<Cursor>, ApiError> {
        let Some(raw) = &self.cursor else {
            return Ok(None);
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(raw)
            .map_err(|_| ApiError::bad_request("malformed cursor"))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| ApiError::bad_request("malformed cursor"))
    }

    /// `(after_t, after_id)` for `WHERE (created_at_ms, id) > ($t, $id)`;
    /// the start of the list when there is no cursor.
    pub fn after(&self) -> Result<(i64, String), ApiError> {
        Ok(self
            .cursor()?
            .map(|c| (c.t, c.id))
            .unwrap_or((i64::MIN, String::new())))
    }
}

/// One page of a list.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// The items, oldest first.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Build a page from up to `limit + 1` rows (the extra one tells whether
    /// there is a next page); `key` gives each item's `(created_at_ms, id)`.
    pub fn from_rows(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> (i64, String)) -> Self {
        let limit = limit as usize;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| {
                let (t, id) = key(last);
                let json = serde_json::to_vec(&Cursor { t, id }).unwrap_or_default();
                URL_SAFE_NO_PAD.encode(json)
            })
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

/// What a tenant-scoped list reads: `columns` of `table`, optionally
/// filtered by `column = value`. Table and column names are constants of
/// the caller (never input); the value is bound.
pub struct Listing<'a> {
    /// The SELECT list.
    pub columns: &'a str,
    /// The table (it has `tenant_id`, `created_at_ms` and `id`).
    pub table: &'a str,
    /// An equality filter.
    pub filter: Option<(&'a str, &'a str)>,
}

/// One page of a tenant's rows, oldest first, each row turned into an item
/// by `item`; `key` gives an item's `(created_at_ms, id)`.
pub async fn tenant_page<T, E: std::fmt::Display>(
    db: &crate::db::Db,
    listing: Listing<'_>,
    tenant: &str,
    page: &PageQuery,
    item: impl Fn(&sqlx::any::AnyRow) -> Result<T, E>,
    key: impl Fn(&T) -> (i64, String),
) -> Result<Page<T>, ApiError> {
    let Listing {
        columns,
        table,
        filter,
    } = listing;
    let (after_t, after_id) = page.after()?;
    let limit = page.limit();
    let clause = filter
        .map(|(column, _)| format!("AND {column} = $5"))
        .unwrap_or_default();
    let sql = format!(
        "SELECT {columns} FROM {table} \
         WHERE tenant_id = $1 AND (created_at_ms, id) > ($2, $3) {clause} \
         ORDER BY created_at_ms, id LIMIT $4"
    );
    let mut query = sqlx::query(&sql)
        .bind(tenant)
        .bind(after_t)
        .bind(after_id)
        .bind(i64::from(limit) + 1);
    if let Some((_, value)) = filter {
        query = query.bind(value);
    }
    let rows = query
        .fetch_all(db.pool())
        .await
        .map_err(ApiError::internal)?;
    let items = rows
        .iter()
        .map(item)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    Ok(Page::from_rows(items, limit, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        let rows: Vec<(i64, String)> = (0..4).map(|i| (i, format!("id{i}"))).collect();
        let page = Page::from_rows(rows, 3, |r| r.clone());
        assert_eq!(page.items.len(), 3);
        let q = PageQuery {
            limit: Some(3),
            cursor: page.next_cursor.clone(),
        };
        assert_eq!(q.after().expect("cursor"), (2, "id2".to_owned()));
        let last = Page::from_rows(vec![(1, "a".to_owned())], 3, |r| r.clone());
        assert!(last.next_cursor.is_none());
        let bad = PageQuery {
            limit: None,
            cursor: Some("!!".into()),
        };
        assert!(bad.after().is_err());
        assert_eq!(PageQuery::default().limit(), DEFAULT_LIMIT);
        assert_eq!(
            PageQuery {
                limit: Some(10_000),
                cursor: None
            }
            .limit(),
            MAX_LIMIT
        );
    }
}
