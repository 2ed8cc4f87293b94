//! Cursor pagination for every list: `?limit=N&cursor=C` answers
//! `{ "items": [...], "next_cursor": C? }`.
//!
//! Lists are ordered by `(created_at_ms, id)`; the cursor is that pair of the
//! last item, `<t>.<id>`, opaque to clients. Keyset pagination stays
//! correct while rows are inserted and costs one index range scan per page.
//!
//! Every string the cursor's documented pattern admits is a position in the
//! list (ids are `[A-Za-z0-9_.:-]`), so a cursor is either well-formed or
//! refused by its pattern: the OpenAPI document states exactly what is
//! accepted (contract testers generate cursors from it).

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
    /// Items per page (1-200, default 50); outside that range is a 400.
    #[param(minimum = 1, maximum = 200)]
    #[serde(default, deserialize_with = "page_limit")]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page, as given.
    #[param(pattern = r"^[0-9]{1,18}\.[A-Za-z0-9_.:-]{1,200}$")]
    pub cursor: Option<String>,
}

/// A limit outside 1..=MAX_LIMIT is refused rather than clamped, so that a
/// client learns its page is not the size it asked for (and the document's
/// range is the truth).
pub fn page_limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let limit = Option::<u32>::deserialize(d)?;
    match limit {
        Some(n) if !(1..=MAX_LIMIT).contains(&n) => Err(serde::de::Error::custom(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        ))),
        _ => Ok(limit),
    }
}

/// Where a page starts: after this `(created_at_ms, id)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Creation time of the last item seen.
    pub t: i64,
    /// Id of the last item seen.
    pub id: String,
}

impl Cursor {
    /// `<t>.<id>`.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.t, self.id)
    }

    /// The inverse of [`Cursor::encode`], for exactly the strings the
    /// documented pattern admits.
    pub fn decode(raw: &str) -> Result<Self, ApiError> {
        let malformed = || ApiError::bad_request("malformed cursor (pass next_cursor as given)");
        let (t, id) = raw.split_once('.').ok_or_else(malformed)?;
        let digits = !t.is_empty() && t.len() <= 18 && t.bytes().all(|b| b.is_ascii_digit());
        let id_ok = !id.is_empty()
            && id.len() <= 200
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        if !digits || !id_ok {
            return Err(malformed());
        }
        Ok(Self {
            t: t.parse().map_err(|_| malformed())?,
            id: id.to_owned(),
        })
    }
}

impl PageQuery {
    /// The page size (a value outside the range never gets past
    /// deserialization; clamped all the same for pages built in code).
    pub fn limit(&self) -> u32 {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
    }

    /// The decoded cursor; a malformed one is a 400.
    pub fn cursor(&self) -> Result<Option<Cursor>, ApiError> {
        self.cursor.as_deref().map(Cursor::decode).transpose()
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
                Cursor { t, id }.encode()
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
/// filtered by `column = value` pairs (all must hold). Table and column names are constants of
/// the caller (never input); the value is bound.
pub struct Listing<'a> {
    /// The SELECT list.
    pub columns: &'a str,
    /// The table (it has `tenant_id`, `created_at_ms` and `id`).
    pub table: &'a str,
    /// Equality filters, ANDed.
    pub filters: &'a [(&'a str, &'a str)],
}

/// One page of a tenant's rows, oldest first, each row turned into an item
/// by `item`; `key` gives an item's `(created_at_ms, id)`.
pub async fn tenant_page<T, E: std::fmt::Display + 'static>(
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
        filters,
    } = listing;
    let (after_t, after_id) = page.after()?;
    let limit = page.limit();
    let clause: String = filters
        .iter()
        .enumerate()
        .map(|(i, (column, _))| format!(" AND {column} = ${}", i + 5))
        .collect();
    let sql = format!(
        "SELECT {columns} FROM {table} \
         WHERE tenant_id = $1 AND (created_at_ms, id) > ($2, $3){clause} \
         ORDER BY created_at_ms, id LIMIT $4"
    );
    let mut query = sqlx::query(&sql)
        .bind(tenant)
        .bind(after_t)
        .bind(after_id)
        .bind(i64::from(limit) + 1);
    for (_, value) in filters {
        query = query.bind(*value);
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
        for garbage in [
            "!!",
            "",
            "1",
            ".x",
            "x.y",
            "1.",
            "1.a b",
            "-1.x",
            "1234567890123456789.x",
        ] {
            let bad = PageQuery {
                limit: None,
                cursor: Some(garbage.into()),
            };
            assert!(bad.after().is_err(), "{garbage:?} accepted");
        }
        // Any cursor of the documented shape is a position.
        let anywhere = PageQuery {
            limit: None,
            cursor: Some("0.a.b:c-d_e".into()),
        };
        assert_eq!(
            anywhere.after().expect("a position"),
            (0, "a.b:c-d_e".into())
        );
        assert_eq!(PageQuery::default().limit(), DEFAULT_LIMIT);
        let query = |q: &str| {
            let uri: axum::http::Uri = format!("/v1/agents?{q}").parse().expect("uri");
            axum::extract::Query::<PageQuery>::try_from_uri(&uri).map(|q| q.0)
        };
        for bad in ["limit=0", "limit=201", "limit=-1", "limit=x"] {
            assert!(query(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(query("limit=200").expect("in range").limit(), MAX_LIMIT);
    }
}
