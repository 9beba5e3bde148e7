//! "Get conversions by user" (`GET /v1/byUser`, api.md): the conversions of a time window, a
//! page at a time, each page's `LastEvaluatedKey` leading to the next. The way to find tasks
//! nobody registered.

use serde_json::Value;

use crate::domain::conversion::ConversionType;
use crate::error::{Error, Result};

/// The order byUser lists conversions in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortOrder {
    #[default]
    Desc,
    Asc,
}

impl SortOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            SortOrder::Desc => "DESC",
            SortOrder::Asc => "ASC",
        }
    }

    pub fn parse(text: &str) -> Option<SortOrder> {
        match text.trim().to_ascii_uppercase().as_str() {
            "DESC" => Some(SortOrder::Desc),
            "ASC" => Some(SortOrder::Asc),
            _ => None,
        }
    }
}

/// Conversions created from `start` to `end`, in seconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub start: u64,
    pub end: u64,
}

/// The page size of the official client; byUser takes 1 to 100.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 100;

/// One byUser listing: a time window, optionally one conversion type.
#[derive(Debug, Clone, PartialEq)]
pub struct ByUserQuery {
    pub conversion_type: Option<ConversionType>,
    pub window: TimeWindow,
    pub sort_order: SortOrder,
    /// Conversions per page.
    pub limit: u32,
}

impl ByUserQuery {
    pub fn new(window: TimeWindow) -> ByUserQuery {
        ByUserQuery {
            conversion_type: None,
            window,
            sort_order: SortOrder::Desc,
            limit: DEFAULT_LIMIT,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.window.end <= self.window.start {
            return Err(Error::InvalidRequest(
                "byUser: endDate must come after startDate".into(),
            ));
        }
        if !(1..=MAX_LIMIT).contains(&self.limit) {
            return Err(Error::InvalidRequest(format!(
                "byUser: limit must be between 1 and {MAX_LIMIT} (got {})",
                self.limit
            )));
        }
        Ok(())
    }

    /// The query parameters of one page: dates in ISO 8601 (UTC), the type as the docs spell
    /// it, the previous page's key as it came.
    pub fn params(&self, page: Option<&PageKey>) -> Vec<(&'static str, String)> {
        let mut params = Vec::new();
        if let Some(t) = self.conversion_type {
            params.push(("conversionType", t.as_str().to_owned()));
        }
        params.push(("startDate", iso8601(self.window.start)));
        params.push(("endDate", iso8601(self.window.end)));
        params.push(("sortOrder", self.sort_order.as_str().to_owned()));
        params.push(("limit", self.limit.to_string()));
        if let Some(key) = page {
            params.push(("LastEvaluatedKey", key.as_str().to_owned()));
        }
        params
    }
}

/// byUser's `LastEvaluatedKey`: opaque, sent back as it came (an object as its JSON text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageKey(String);

impl PageKey {
    pub fn new(text: impl Into<String>) -> PageKey {
        PageKey(text.into())
    }

    /// `None` for a missing, null or empty key: the last page.
    pub fn from_answer(value: Option<&Value>) -> Option<PageKey> {
        match value? {
            Value::Null => None,
            Value::String(s) if s.trim().is_empty() => None,
            Value::String(s) => Some(PageKey(s.clone())),
            Value::Object(m) if m.is_empty() => None,
            other => Some(PageKey(other.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One page of byUser.
#[derive(Debug, Clone, PartialEq)]
pub struct ByUserPage {
    pub conversions: Vec<Value>,
    /// The next page's key; `None` on the last page.
    pub next: Option<PageKey>,
}

impl ByUserPage {
    pub fn from_answer(answer: &Value) -> Result<ByUserPage, String> {
        let Some(map) = answer.as_object() else {
            return Err("the answer is not a JSON object".into());
        };
        if map.get("success").and_then(Value::as_bool) == Some(false) {
            let why = ["message", "error"]
                .iter()
                .find_map(|k| map.get(*k).and_then(Value::as_str))
                .unwrap_or("no reason given");
            return Err(format!("byUser refused: {why}"));
        }
        let conversions = match map.get("conversions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.clone(),
            Some(_) => return Err("byUser answered `conversions` that is not a list".into()),
        };
        Ok(ByUserPage {
            conversions,
            next: PageKey::from_answer(map.get("LastEvaluatedKey")),
        })
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of an epoch second (UTC, proleptic Gregorian).
pub fn iso8601(epoch_secs: u64) -> String {
    let days = i64::try_from(epoch_secs / 86_400).unwrap_or(i64::MAX / 2);
    let secs = epoch_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The epoch second of `YYYY-MM-DD` (midnight UTC), `YYYY-MM-DDTHH:MM[:SS][Z]` (UTC), or a
/// plain number of seconds since the epoch.
pub fn parse_time(text: &str) -> Option<u64> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((date, time)) => (date, Some(time.strip_suffix('Z').unwrap_or(time))),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=days_in_month(y, m)).contains(&d)
    {
        return None;
    }
    let mut secs = 0u64;
    if let Some(time) = time {
        let mut hms = time.splitn(3, ':');
        let h: u64 = hms.next()?.parse().ok()?;
        let min: u64 = hms.next()?.parse().ok()?;
        let s: u64 = hms.next().unwrap_or("0").split('.').next()?.parse().ok()?;
        if h > 23 || min > 59 || s > 59 {
            return None;
        }
        secs = h * 3600 + min * 60 + s;
    }
    let days = u64::try_from(days_from_civil(y, m, d)).ok()?;
    Some(days * 86_400 + secs)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A civil date to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_page_sends_the_window_the_type_and_the_key() {
        let window = TimeWindow {
            start: 1_767_225_600,
            end: 1_767_312_000,
        };
        let mut query = ByUserQuery::new(window);
        query.conversion_type = ConversionType::parse("VOICE_CHANGER");
        assert_eq!(
            query.params(Some(&PageKey::new("k1"))),
            vec![
                ("conversionType", "VOICE_CONVERSION".to_owned()),
                ("startDate", "2026-01-01T00:00:00Z".to_owned()),
                ("endDate", "2026-01-02T00:00:00Z".to_owned()),
                ("sortOrder", "DESC".to_owned()),
                ("limit", "50".to_owned()),
                ("LastEvaluatedKey", "k1".to_owned()),
            ]
        );
        query.limit = 101;
        assert!(query.validate().is_err());
        query.limit = 10;
        assert!(query.validate().is_ok());
        query.window.end = query.window.start;
        assert!(query.validate().is_err());
    }

    #[test]
    fn pages_and_their_keys_are_read() {
        let page = ByUserPage::from_answer(&json!({"success": true,
            "conversions": [{"task_id": "a"}], "LastEvaluatedKey": {"pk": "x", "createdAt": 5}}))
        .expect("page");
        assert_eq!(page.conversions.len(), 1);
        assert_eq!(
            page.next.as_ref().map(PageKey::as_str),
            Some(r#"{"createdAt":5,"pk":"x"}"#)
        );
        for last in [
            json!({"conversions": []}),
            json!({"LastEvaluatedKey": null}),
            json!({"LastEvaluatedKey": ""}),
        ] {
            assert!(ByUserPage::from_answer(&last).expect("page").next.is_none());
        }
        let refused = ByUserPage::from_answer(&json!({"success": false, "message": "bad date"}));
        assert!(refused.is_err_and(|e| e.contains("bad date")));
        assert!(ByUserPage::from_answer(&json!({"conversions": 3})).is_err());
    }

    #[test]
    fn times_go_both_ways() {
        for secs in [0, 951_782_400, 1_767_225_600, 1_774_596_501, 4_102_444_799] {
            assert_eq!(parse_time(&iso8601(secs)), Some(secs), "{secs}");
        }
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(parse_time("2026-01-01"), Some(1_767_225_600));
        assert_eq!(parse_time("2026-01-01T01:00"), Some(1_767_229_200));
        assert_eq!(parse_time("1767225600"), Some(1_767_225_600));
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "yesterday",
            "2026-01-01T25:00:00Z",
            "",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }
}
