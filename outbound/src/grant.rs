//! Allow-list rules: what a deployment's `http.hosts` entries mean.
//!
//! An entry is `[scheme://]host[:port]`:
//! - `api.example.com`: that host exactly, over https on 443;
//! - `*.example.com`: any host under example.com (not example.com itself);
//! - `http://localhost:8080`: plain http must be named, as must a port
//!   other than the scheme's own.
//!
//! No path, query, user or wildcard elsewhere. Hosts compare in lower case.
//! A rule says what may be *asked for*; the address filter
//! ([`crate::addr`]) still decides what may be *reached*.

use std::net::IpAddr;

use reqwest::Url;

/// Longest entry accepted.
pub const MAX_ENTRY: usize = 300;

/// How a rule names hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// This host exactly (a name or an IP literal).
    Exact(String),
    /// Any host ending in `.` and this suffix.
    Suffix(String),
}

/// One parsed allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    /// `https` or `http`.
    pub scheme: String,
    /// The hosts.
    pub host: HostPattern,
    /// The port.
    pub port: u16,
}

fn valid_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl HostRule {
    /// Parse one entry; the error says what is wrong with it.
    pub fn parse(entry: &str) -> Result<Self, String> {
        if entry.is_empty() || entry.len() > MAX_ENTRY {
            return Err(format!("an entry is 1-{MAX_ENTRY} characters"));
        }
        let (scheme, rest) = match entry.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("https".to_owned(), entry),
        };
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return Err(format!("{entry:?}: the scheme must be https or http")),
        };
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "{entry:?}: only [scheme://]host[:port] (no path, query or user)"
            ));
        }
        // `[v6]:port`, `[v6]`, `host:port`, `host`.
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{entry:?}: unclosed ["))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("{entry:?}: unexpected text after ]")),
            };
            (addr.to_owned(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (rest.to_owned(), None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{entry:?}: the port must be 1-65535"))?,
            None => default_port,
        };
        let host = host.to_ascii_lowercase();
        let pattern = if let Some(suffix) = host.strip_prefix("*.") {
            if !valid_name(suffix) || !suffix.contains('.') {
                return Err(format!(
                    "{entry:?}: a wildcard covers subdomains of a domain with a dot, e.g. *.example.com"
                ));
            }
            HostPattern::Suffix(suffix.to_owned())
        } else if host.parse::<IpAddr>().is_ok() || valid_name(&host) {
            HostPattern::Exact(host)
        } else {
            return Err(format!(
                "{entry:?}: not a host name, *.domain or IP address"
            ));
        };
        Ok(Self {
            scheme,
            host: pattern,
            port,
        })
    }

    /// Parse every entry, or say which is wrong.
    pub fn parse_all(entries: &[String]) -> Result<Vec<Self>, String> {
        entries.iter().map(|e| Self::parse(e)).collect()
    }

    /// Whether this rule allows `url`.
    pub fn allows(&self, url: &Url) -> bool {
        let Some(host) = url_host(url) else {
            return false;
        };
        url.scheme() == self.scheme
            && url.port_or_known_default() == Some(self.port)
            && match &self.host {
                HostPattern::Exact(h) => *h == host,
                HostPattern::Suffix(s) => host
                    .strip_suffix(s.as_str())
                    .is_some_and(|head| head.ends_with('.') && head.len() > 1),
            }
    }
}

/// The URL's host as rules compare it: lower case, IPv6 without brackets.
pub fn url_host(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    Some(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    #[test]
    fn entries_parse_and_match_scheme_host_and_port() {
        let exact = HostRule::parse("api.example.com").expect("exact");
        assert!(exact.allows(&url("https://api.example.com/v1?x=1")));
        assert!(exact.allows(&url("https://API.example.com:443/")));
        assert!(
            !exact.allows(&url("http://api.example.com/")),
            "http must be named"
        );
        assert!(
            !exact.allows(&url("https://api.example.com:8443/")),
            "another port"
        );
        assert!(!exact.allows(&url("https://api.example.com.evil.test/")));
        assert!(!exact.allows(&url("https://x.api.example.com/")));

        let wild = HostRule::parse("*.example.com").expect("wildcard");
        assert!(wild.allows(&url("https://a.example.com/")));
        assert!(wild.allows(&url("https://a.b.example.com/")));
        assert!(!wild.allows(&url("https://example.com/")), "not the apex");
        assert!(!wild.allows(&url("https://badexample.com/")));

        let local = HostRule::parse("http://localhost:8080").expect("http");
        assert!(local.allows(&url("http://localhost:8080/x")));
        assert!(!local.allows(&url("https://localhost:8080/x")));
        assert!(!local.allows(&url("http://localhost/x")));

        let ip = HostRule::parse("http://127.0.0.1:9000").expect("ip");
        assert!(ip.allows(&url("http://127.0.0.1:9000/")));
        let v6 = HostRule::parse("[::1]:9000").expect("v6");
        assert!(v6.allows(&url("https://[::1]:9000/")));

        for bad in [
            "",
            "ftp://example.com",
            "example.com/path",
            "user@example.com",
            "*.com",
            "*",
            "exa mple.com",
            "example.com:0",
            "example.com:99999",
            "-bad.example.com",
            "a.*.example.com",
        ] {
            assert!(HostRule::parse(bad).is_err(), "{bad:?}");
        }
    }
}
