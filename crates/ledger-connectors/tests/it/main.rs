//! The Stripe connector: signature vectors, the shared fixtures, generated lifecycles
//! delivered in any order, and localstripe's own signed deliveries, all applied in memory with
//! `ledger_domain::decide` + `evolve` as the writer does.

mod localstripe;
mod stripe_fixtures;
mod stripe_lifecycles;
mod stripe_signatures;
mod support;
