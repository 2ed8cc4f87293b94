//! Recipient syntax per channel, the per-agent allow-list and the check of
//! its entries.

use std::str::FromStr;

use lettre::Address;

use crate::ChannelId;

/// Longest email address accepted (RFC 5321's path limit minus the angle
/// brackets).
const MAX_EMAIL_LEN: usize = 254;

/// A recipient that passed the channel's syntax check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// An RFC 5322 addr-spec (no display name, no comments).
    Email(Address),
    /// An E.164 number, `+` included.
    Phone(String),
}

/// Parse `raw` as a recipient for `channel`; `None` when it is not one.
pub fn parse(channel: ChannelId, raw: &str) -> Option<Recipient> {
    match channel {
        ChannelId::Email => {
            // lettre's parser rejects display names, whitespace and control
            // characters, so the address can be placed in a header verbatim.
            if raw.len() > MAX_EMAIL_LEN || raw.chars().any(char::is_control) {
                return None;
            }
            Address::from_str(raw).ok().map(Recipient::Email)
        }
        ChannelId::Sms => is_e164(raw).then(|| Recipient::Phone(raw.to_owned())),
    }
}

/// `+` followed by 8 to 15 digits, the first not zero (no country code
/// starts with 0).
pub fn is_e164(raw: &str) -> bool {
    let Some(digits) = raw.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Why an allow-list entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?} is not an email address (RFC 5322 addr-spec), *@domain or an E.164 number")]
pub struct InvalidRecipientEntry {
    /// The entry, clipped to 64 characters.
    pub entry: String,
}

/// Check one entry of an agent's recipient allow-list as
/// [`is_allowed`] reads it: an email address (an addr-spec, no display
/// name), `*@domain` for every address of a domain, or an E.164 number.
/// Anything else could never match a recipient, so it is refused where
/// the list is written rather than ignored where it is used.
pub fn check_allow_entry(entry: &str) -> Result<(), InvalidRecipientEntry> {
    let valid = if let Some(domain) = entry.strip_prefix("*@") {
        // The domain is valid when an address on it is.
        !domain.is_empty() && parse(ChannelId::Email, &format!("x@{domain}")).is_some()
    } else if entry.starts_with('+') && !entry.contains('@') {
        // A number. An address may start with `+` too (`+tag@example.com`
        // is a valid addr-spec that sends match; found by fuzz/recipients).
        is_e164(entry)
    } else {
        parse(ChannelId::Email, entry).is_some()
    };
    if valid {
        Ok(())
    } else {
        Err(InvalidRecipientEntry {
            entry: entry.chars().take(64).collect(),
        })
    }
}

/// Whether `recipient` matches an entry of the agent's allow-list.
///
/// Email addresses compare case-insensitively (providers treat the local
/// part case-insensitively in practice, and an operator writing
/// `Bob@Example.com` means the same mailbox); `*@domain` covers a whole
/// domain. Phone numbers compare exactly.
pub fn is_allowed(recipient: &Recipient, allowed: &[String]) -> bool {
    match recipient {
        Recipient::Email(address) => {
            let full = AsRef::<str>::as_ref(address).to_lowercase();
            let domain = address.domain().to_lowercase();
            allowed.iter().any(|entry| {
                let entry = entry.to_lowercase();
                match entry.strip_prefix("*@") {
                    Some(d) => d == domain,
                    None => entry == full,
                }
            })
        }
        Recipient::Phone(number) => allowed.iter().any(|entry| entry == number),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164() {
        assert!(is_e164("+14155550100"));
        assert!(is_e164("+12345678"));
        assert!(!is_e164("+1234567"));
        assert!(!is_e164("+1234567890123456"));
        assert!(!is_e164("14155550100"));
        assert!(!is_e164("+04155550100"));
        assert!(!is_e164("+1415555010a"));
        assert!(!is_e164("+1415 555 0100"));
    }

    #[test]
    fn email_syntax() {
        assert!(parse(ChannelId::Email, "bob@example.com").is_some());
        for bad in [
            "bob",
            "Bob <bob@example.com>",
            "bob@example.com\r\nBcc: eve@example.com",
            "bob@example.com\n",
            "bob @example.com",
            "",
        ] {
            assert!(parse(ChannelId::Email, bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn allow_list_entries_are_checked() {
        for ok in [
            "bob@example.com",
            "*@example.com",
            "*@sub.example.co.uk",
            "+14155550100",
            "+tag@example.com",
        ] {
            assert_eq!(check_allow_entry(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "bob",
            "*@",
            "*@exa mple.com",
            "*@*.example.com",
            "Bob <bob@example.com>",
            "bob@example.com\n",
            "+1234",
            "+04155550100",
            "14155550100",
            "*",
        ] {
            assert!(check_allow_entry(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn allow_list() {
        let allowed = vec!["Bob@Example.com".to_owned(), "*@corp.test".to_owned()];
        let r = |s: &str| parse(ChannelId::Email, s).expect("valid");
        assert!(is_allowed(&r("bob@example.com"), &allowed));
        assert!(is_allowed(&r("anyone@CORP.test"), &allowed));
        assert!(!is_allowed(&r("eve@example.com"), &allowed));
        assert!(!is_allowed(&r("bob@sub.corp.test"), &allowed));
        let phone = parse(ChannelId::Sms, "+14155550100").expect("valid");
        assert!(is_allowed(&phone, &["+14155550100".to_owned()]));
        assert!(!is_allowed(&phone, &["+14155550101".to_owned()]));
    }
}
