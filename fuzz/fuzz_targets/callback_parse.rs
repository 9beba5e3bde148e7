//! Feeds arbitrary bodies to the callback parser, as JSON and as a form; the first byte picks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use musicgpt_webhook::domain::callback::Callback;

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.split_first() {
        Some((selector, rest)) if selector % 2 == 0 => (Some("application/x-www-form-urlencoded"), rest),
        Some((_, rest)) => (Some("application/json"), rest),
        None => (None, data),
    };
    if let Ok(callback) = Callback::parse(body, content_type) {
        // Whatever is accepted must survive its own canonical form.
        let again = Callback::parse(callback.canonical_json.as_bytes(), None);
        assert!(again.is_ok_and(|again| again == callback));
    }
});
