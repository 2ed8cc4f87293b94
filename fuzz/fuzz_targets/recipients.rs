//! A guest's recipient and an admin's allow-list entries: parsing never
//! panics, a parsed address carries no control character (nothing that
//! could break out of a header), a number is only digits, and a send is allowed only by an entry that the allow-list check
//! accepts.
#![no_main]

use arbitrary::Arbitrary;
use delta_templates::ChannelId;
use delta_templates::fuzzing::{allowed, recipient};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    sms: bool,
    raw: String,
    entries: Vec<String>,
}

fuzz_target!(|input: Input| {
    let channel = if input.sms {
        ChannelId::Sms
    } else {
        ChannelId::Email
    };
    if let Some(parsed) = recipient(channel, &input.raw) {
        // Quoted local parts may hold `,` or `;` (RFC 5322), which lettre
        // keeps quoted; a line break or any control character never passes.
        assert!(!parsed.chars().any(char::is_control), "{parsed:?}");
        if input.sms {
            assert!(
                parsed.starts_with('+') && parsed[1..].bytes().all(|b| b.is_ascii_digit()),
                "{parsed:?}"
            );
        }
    }
    let valid: Vec<String> = input
        .entries
        .iter()
        .filter(|e| delta_templates::check_allow_entry(e).is_ok())
        .cloned()
        .collect();
    if allowed(channel, &input.raw, &input.entries) {
        // Entries the admin API would have refused can never match.
        assert!(allowed(channel, &input.raw, &valid), "{input:?}");
    }
});
