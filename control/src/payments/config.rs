//! `[payments]` in control.toml: where a bounty's escrow is held.
//!
//! ```toml
//! [payments]
//! backend = "stripe"                        # default "ledger"
//! [payments.stripe]
//! api_base = "https://api.stripe.com"       # or any Stripe-compatible API
//! secret_key_file = "/etc/delta/stripe-key" # sk_live_... / sk_test_...
//! webhook_secret_file = "/etc/delta/stripe-whsec"   # the endpoint's whsec_...
//! authorization_window_secs = 604800        # how long a card hold lasts (7 days)
//! ```

use std::path::PathBuf;

use serde::Deserialize;

/// Which backend escrows new bounties' rewards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentsBackend {
    /// The business's ledger balance (operator top-ups) is escrowed.
    #[default]
    Ledger,
    /// The business's card is authorized through Stripe and captured on
    /// approval.
    Stripe,
}

/// `[payments]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// The backend of newly funded bounties (a bounty keeps the one that
    /// funded it).
    pub backend: PaymentsBackend,
    /// Needed when `backend = "stripe"`, or while bounties funded through
    /// Stripe are still open.
    pub stripe: Option<StripeConfig>,
}

/// `[payments.stripe]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    /// The API's base URL (default `https://api.stripe.com`); plain `http`
    /// only to loopback.
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// File with the secret API key.
    pub secret_key_file: PathBuf,
    /// File with the webhook endpoint's signing secret (`whsec_...`), for
    /// `POST /v1/payments/stripe/webhook`.
    pub webhook_secret_file: PathBuf,
    /// How long an uncaptured card authorization lasts (default 7 days, as
    /// Stripe's for cards). A bounty whose deadline is further away is
    /// refused at funding: its hold would lapse before it could be paid.
    #[serde(default = "default_window")]
    pub authorization_window_secs: u64,
}

fn default_api_base() -> String {
    "https://api.stripe.com".to_owned()
}

fn default_window() -> u64 {
    7 * 24 * 3600
}

impl PaymentsConfig {
    /// A complaint about an unusable combination, or `None`.
    pub fn problem(&self) -> Option<String> {
        if self.backend == PaymentsBackend::Stripe && self.stripe.is_none() {
            return Some("payments.backend = \"stripe\" needs a [payments.stripe] section".into());
        }
        let s = self.stripe.as_ref()?;
        let Ok(url) = reqwest::Url::parse(&s.api_base) else {
            return Some(format!(
                "payments.stripe.api_base {:?} is not a URL",
                s.api_base
            ));
        };
        let loopback = url.host_str().is_some_and(|h| {
            h == "localhost"
                || h.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            return Some(format!(
                "payments.stripe.api_base {:?} must be https (plain http only to loopback): \
                 it carries the secret key",
                s.api_base
            ));
        }
        if !(3600..=31 * 24 * 3600).contains(&s.authorization_window_secs) {
            return Some(format!(
                "payments.stripe.authorization_window_secs must be between 3600 and 2678400, not {}",
                s.authorization_window_secs
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripe(api_base: &str, window: u64) -> PaymentsConfig {
        PaymentsConfig {
            backend: PaymentsBackend::Stripe,
            stripe: Some(StripeConfig {
                api_base: api_base.to_owned(),
                secret_key_file: "key".into(),
                webhook_secret_file: "whsec".into(),
                authorization_window_secs: window,
            }),
        }
    }

    #[test]
    fn stripe_needs_its_section_https_and_a_sane_window() {
        assert_eq!(PaymentsConfig::default().problem(), None);
        let missing = PaymentsConfig {
            backend: PaymentsBackend::Stripe,
            stripe: None,
        };
        assert!(
            missing
                .problem()
                .is_some_and(|p| p.contains("[payments.stripe]"))
        );
        assert_eq!(stripe("https://api.stripe.com", 604_800).problem(), None);
        assert_eq!(stripe("http://127.0.0.1:9000", 604_800).problem(), None);
        assert_eq!(stripe("http://[::1]:9000", 604_800).problem(), None);
        assert!(
            stripe("http://stripe.example.com", 604_800)
                .problem()
                .is_some_and(|p| p.contains("https"))
        );
        assert!(stripe("not a url", 604_800).problem().is_some());
        assert!(
            stripe("https://api.stripe.com", 60)
                .problem()
                .is_some_and(|p| p.contains("authorization_window_secs"))
        );
    }

    #[test]
    fn the_section_parses_with_defaults() {
        let c: PaymentsConfig = toml::from_str(
            "backend = \"stripe\"\n[stripe]\nsecret_key_file = \"k\"\nwebhook_secret_file = \"w\"\n",
        )
        .expect("parses");
        let s = c.stripe.expect("stripe");
        assert_eq!(s.api_base, "https://api.stripe.com");
        assert_eq!(s.authorization_window_secs, 604_800);
        assert!(toml::from_str::<PaymentsConfig>("backend = \"paypal\"").is_err());
    }
}
