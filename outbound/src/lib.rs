//! Agents' outbound HTTP (`delta:agent/http`), host side.
//!
//! - [`grant`]: the allow-list rules a deployment's `http.hosts` grant
//!   parses into (`api.example.com`, `*.example.com`, `http://host:8080`),
//!   and the check of a URL against them.
//! - [`addr`]: which addresses an agent may reach: public unicast only,
//!   unless the operator allows private networks.
//! - [`client`]: [`Outbound`], the one client a node shares between its
//!   agents: it resolves names itself and drops every address the filter
//!   refuses, on every connection (so a name that resolves to a public
//!   address once and to 127.0.0.1 next, DNS rebinding, still cannot reach
//!   loopback); never follows redirects; ignores proxy variables; injects
//!   secrets into header values; bounds bodies, time and rate.
//!
//! No backend of the control plane is linked here: the node gives
//! [`Outbound::send`] a [`SecretSource`] for `{{secret:NAME}}`.

#![forbid(unsafe_code)]

pub mod addr;
pub mod client;
pub mod grant;

pub use client::{OutError, OutRequest, OutResponse, Outbound, OutboundConfig, SecretSource};
pub use grant::HostRule;
