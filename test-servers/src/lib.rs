//! Loopback servers that speak real protocols, for tests only: scripted LLM
//! providers (Anthropic Messages, OpenAI-compatible chat completions), an
//! SMTP server that records what it receives, a Twilio-compatible SMS
//! API, a Stripe-compatible PaymentIntents API with signed webhooks, an
//! S3-compatible object store (SigV4 checked), and an HTTP server that
//! records every request (agents' outbound HTTP).
//! Each binds `127.0.0.1:0` and reports its address.

pub mod echo;
pub mod llm;
pub mod s3;
pub mod sms;
pub mod smtp;
pub mod stripe;
