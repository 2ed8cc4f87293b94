//! What every API command group shares: `--json`, tables for people, cursor
//! paging, query strings and path segments, and the error for input the
//! CLI refuses before calling the API (exit code 2).

use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::Api;

/// `--json`: the API's answer as it is, instead of a table.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct Output {
    /// Print the API's JSON answer instead of a table (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

/// Input refused before any call (bad JSON, a date that is not one, ...):
/// `main` maps it to exit code 2, like an argument clap refuses.
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// A [`BadInput`] error.
pub fn bad_input(message: impl Into<String>) -> anyhow::Error {
    BadInput(message.into()).into()
}

/// Something named on the command line that does not exist (an agent or
/// template name no list holds): exit code 8, like the API's 404.
#[derive(Debug)]
pub struct NotFound(pub String);

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFound {}

/// A [`NotFound`] error.
pub fn not_found(message: impl Into<String>) -> anyhow::Error {
    NotFound(message.into()).into()
}

/// `--<what>` parsed as JSON, or a [`BadInput`].
pub fn parse_json(what: &str, raw: &str) -> anyhow::Result<Value> {
    serde_json::from_str(raw).map_err(|e| bad_input(format!("--{what} is not JSON: {e}")))
}

/// A JSON value as a table cell: strings bare, null as `-`.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Print `value` as indented JSON.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A table column: its heading and the item's field (a JSON pointer such
/// as `/id` or `/outcome/status`).
pub type Column<'a> = (&'a str, &'a str);

/// Print `items` as a table of `columns`, each as wide as its widest cell
/// (the last one unpadded), or `empty` when there are none.
pub fn table(columns: &[Column<'_>], items: &[Value], empty: &str) {
    if items.is_empty() {
        println!("{empty}");
        return;
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|(_, pointer)| text(item.pointer(pointer).unwrap_or(&Value::Null)))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (heading, _))| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([heading.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(columns.iter().map(|(h, _)| *h).collect());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// One object as `key  value` lines (`fields` in order; nested values as
/// JSON).
pub fn record(value: &Value, fields: &[&str]) {
    let width = fields.iter().map(|f| f.len()).max().unwrap_or(0);
    for field in fields {
        let v = &value[*field];
        let shown = match v {
            Value::Object(_) => v.to_string(),
            other => text(other),
        };
        println!("{field:<width$}  {shown}");
    }
}

/// The `--json` answer, or the human form.
pub fn emit(out: Output, value: &Value, human: impl FnOnce(&Value)) -> anyhow::Result<()> {
    if out.json {
        return print_json(value);
    }
    human(value);
    Ok(())
}

/// Paging of the long lists (messages, audit, deliveries, fires).
#[derive(clap::Args, Debug, Clone)]
pub struct PageArgs {
    /// Items per page (1-200; default: the API's).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub limit: Option<u32>,
    /// Continue from this cursor (the `next_cursor` of the previous page).
    #[arg(long, conflicts_with = "all")]
    pub cursor: Option<String>,
    /// Follow the cursors to the end and print every item.
    #[arg(long)]
    pub all: bool,
}

/// One page (or, with `--all`, every page) of `path` with `params`, and the
/// cursor of the next page (none with `--all`).
pub async fn fetch_page(
    api: &Api,
    path: &str,
    params: &[(&str, String)],
    page: &PageArgs,
) -> anyhow::Result<(Vec<Value>, Option<String>)> {
    let mut items = Vec::new();
    let mut cursor = page.cursor.clone();
    loop {
        let mut query = params.to_vec();
        if let Some(limit) = page.limit.or(page.all.then_some(200)) {
            query.push(("limit", limit.to_string()));
        }
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let answer = api
            .send(Method::GET, &with_query(path, &query)?, None)
            .await?;
        items.extend(answer["items"].as_array().cloned().unwrap_or_default());
        let next = answer["next_cursor"].as_str().map(str::to_owned);
        match next {
            Some(next) if page.all => cursor = Some(next),
            next => return Ok((items, next)),
        }
    }
}

/// Print a page as `--json` (`{items, next_cursor}`) or a table followed by
/// how to get the next page.
pub fn emit_page(
    out: Output,
    items: Vec<Value>,
    next: Option<String>,
    columns: &[Column<'_>],
    empty: &str,
) -> anyhow::Result<()> {
    if out.json {
        return print_json(&json!({ "items": items, "next_cursor": next }));
    }
    table(columns, &items, empty);
    if let Some(next) = next {
        println!("more: --cursor {next} (or --all)");
    }
    Ok(())
}

/// `path?name=value&...`, the values percent-encoded.
pub fn with_query(path: &str, params: &[(&str, String)]) -> anyhow::Result<String> {
    if params.is_empty() {
        return Ok(path.to_owned());
    }
    let mut url = reqwest::Url::parse("http://localhost/")?;
    url.query_pairs_mut()
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
    Ok(format!("{path}?{}", url.query().unwrap_or_default()))
}

/// One path segment, percent-encoded (ids typed by people go into paths).
pub fn segment(value: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse("http://localhost/")?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("no path segments"))?
        .push(value);
    Ok(url.path().trim_start_matches('/').to_owned())
}

/// A point in time for `--since`/`--until`: milliseconds since the epoch,
/// a UTC date `YYYY-MM-DD`, or a duration ago (`90s`, `15m`, `2h`, `7d`).
pub fn time_ms(what: &str, raw: &str, now_ms: i64) -> anyhow::Result<i64> {
    let refuse = || {
        bad_input(format!(
            "--{what} {raw:?}: give milliseconds since the epoch, a date YYYY-MM-DD or a \
             duration ago such as 15m, 2h, 7d"
        ))
    };
    if let Ok(ms) = raw.parse::<i64>() {
        return Ok(ms);
    }
    if let Some((number, unit)) = raw
        .char_indices()
        .last()
        .map(|(i, c)| (&raw[..i], c))
        .filter(|(_, c)| matches!(c, 's' | 'm' | 'h' | 'd'))
    {
        let n: i64 = number.parse().map_err(|_| refuse())?;
        let unit_ms = match unit {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            _ => 86_400_000,
        };
        return n
            .checked_mul(unit_ms)
            .and_then(|d| now_ms.checked_sub(d))
            .ok_or_else(refuse);
    }
    let parts: Vec<&str> = raw.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(refuse());
    };
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i64>(), m.parse::<i64>(), d.parse::<i64>()) else {
        return Err(refuse());
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return Err(refuse());
    }
    Ok(days_from_civil(y, m, d) * 86_400_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`), so that no date crate is needed for one conversion.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> anyhow::Result<i64> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_millis();
    i64::try_from(ms).context("the clock is too far ahead")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_milliseconds_dates_or_durations_ago() {
        let now = 1_700_000_000_000;
        assert_eq!(time_ms("since", "123", now).ok(), Some(123));
        assert_eq!(time_ms("since", "2h", now).ok(), Some(now - 7_200_000));
        assert_eq!(time_ms("since", "1970-01-02", now).ok(), Some(86_400_000));
        assert_eq!(
            time_ms("since", "2024-03-01", now).ok(),
            Some(1_709_251_200_000)
        );
        for bad in ["", "yesterday", "2024-13-01", "2024-02", "h", "-5x"] {
            let e = time_ms("since", bad, now).expect_err(bad);
            assert!(e.downcast_ref::<BadInput>().is_some(), "{bad}: {e}");
        }
    }
}
