//! Bodies that came with the right token but could not be recorded (not JSON, no usable id, too
//! large, refused by the store) are kept for a while, so a change in MusicGPT's format can be
//! seen and replayed instead of being lost with a 400.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::domain::plan::{Condition, ItemWrite};
use crate::domain::status::ItemType;

/// A quarantined body keeps at most this much (a table item holds 400 KB; base64 adds a third).
pub const MAX_QUARANTINED_BYTES: usize = 192 * 1024;

/// The partition of one UTC day's quarantined bodies: `QUARANTINE#2026-12-01`.
pub fn quarantine_pk(now: u64) -> String {
    format!("QUARANTINE#{}", utc_date(now))
}

/// The write that keeps `body` with why it was refused; `retention_secs` sets its TTL.
pub fn quarantine_write(
    body: &[u8],
    content_type: Option<&str>,
    reason: &str,
    now: u64,
    retention_secs: u64,
) -> ItemWrite {
    let sha256 = hex::encode(Sha256::digest(body));
    let kept = &body[..body.len().min(MAX_QUARANTINED_BYTES)];
    let mut write = ItemWrite::new(quarantine_pk(now), format!("{now:010}#{sha256}"));
    write.set = vec![
        ("item_type", json!(ItemType::Quarantined)),
        ("reason", json!(reason)),
        ("content_type", json!(content_type)),
        ("body_bytes", json!(body.len())),
        ("truncated", json!(kept.len() < body.len())),
        ("sha256", json!(sha256)),
        ("received_at", json!(now)),
        ("expires_at", json!(now + retention_secs)),
    ];
    match std::str::from_utf8(kept) {
        Ok(text) => write.set.push(("body", json!(text))),
        Err(_) => {
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(kept);
            write.set.push(("body_base64", json!(encoded)));
        }
    }
    write.condition = Condition::CreateOnly;
    write
}

/// `YYYY-MM-DD` of an epoch second, in UTC (days to civil date, proleptic Gregorian).
fn utc_date(epoch_secs: u64) -> String {
    let days = i64::try_from(epoch_secs / 86_400).unwrap_or(i64::MAX / 2) + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_796_083_199), "2026-11-30");
        assert_eq!(utc_date(1_796_083_200), "2026-12-01");
    }

    #[test]
    fn bodies_are_kept_as_text_or_base64_and_capped() {
        let text = quarantine_write(b"not json", Some("text/plain"), "not JSON", 100, 10);
        assert!(
            text.set
                .iter()
                .any(|(k, v)| *k == "body" && v == "not json")
        );
        assert_eq!(text.condition, Condition::CreateOnly);
        let binary = quarantine_write(&[0xff, 0xfe], None, "not JSON", 100, 10);
        assert!(binary.set.iter().any(|(k, _)| *k == "body_base64"));
        let large = vec![b'x'; MAX_QUARANTINED_BYTES + 5];
        let capped = quarantine_write(&large, None, "too large", 100, 10);
        let body = capped
            .set
            .iter()
            .find(|(k, _)| *k == "body")
            .map(|(_, v)| v);
        assert_eq!(
            body.and_then(|v| v.as_str()).map(str::len),
            Some(MAX_QUARANTINED_BYTES)
        );
        assert!(
            capped
                .set
                .iter()
                .any(|(k, v)| *k == "truncated" && v == true)
        );
    }
}
