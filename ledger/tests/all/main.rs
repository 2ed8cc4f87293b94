//! The token ledger's integration tests, one binary: durability (crashes
//! mid-commit) and the ledger's rules.

mod common;

mod durability;
mod ledger;
