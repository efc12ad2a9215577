//! The connectors: Stripe's signature vectors, the shared fixtures, generated lifecycles
//! delivered in any order, and localstripe's own signed deliveries; PayPal's and Xendit's
//! fixtures, own test data, lifecycles in any order and verification; all applied in memory
//! with `ledger_domain::decide` + `evolve` as the writer does.

mod localstripe;
mod nul;
mod paypal;
mod provider_support;
mod stripe_fixtures;
mod stripe_lifecycles;
mod stripe_signatures;
mod support;
mod xendit;
