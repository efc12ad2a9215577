//! The estimate the writer's and the projectors' caches bound their memory by
//! (`Customer::approximate_bytes`), against the heap customers' states really hold, measured
//! with dhat's heap statistics. A binary of its own with a single test: dhat counts the whole
//! process and runs one profiler at a time, so no other test may allocate while it measures.

#[path = "common/generated.rs"]
mod generated;

use ledger_domain::{Currency, Customer, Money, Payment, PaymentStatus, Stream, decide, evolve};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// Generated sequences whose every intermediate state is measured.
const RUNS: u32 = 300;

/// The heap bytes `state` holds, as its clone allocates them (a B-tree's clone copies its
/// nodes one for one; a string's clone is its length, at most its capacity), plus the struct.
fn held_bytes(state: &Customer) -> usize {
    let before = dhat::HeapStats::get().curr_bytes;
    let copy = state.clone();
    let held = dhat::HeapStats::get().curr_bytes - before;
    drop(copy);
    size_of::<Customer>() + held
}

/// At least what the state holds (a bound by it bounds memory), and not far above (a cache
/// bounded by it holds most of what it may). With one entry per map, as most customers have, a
/// B-tree's node holds room for eleven: the estimate once counted one, and `ledger bench sync`
/// grew to 1.6 GiB under a 256 MiB cache.
fn check(state: &Customer, what: &str) {
    let (estimate, held) = (state.approximate_bytes(), held_bytes(state));
    assert!(
        estimate >= held && estimate <= 4 * held,
        "{what}: estimated {estimate} bytes for a state holding {held}: {state:?}"
    );
}

#[test]
fn a_customers_estimated_memory_is_at_least_what_its_state_holds() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut runner = TestRunner::deterministic();
    for run in 0..RUNS {
        let commands = generated::commands()
            .new_tree(&mut runner)
            .expect("the generator makes a sequence")
            .current();
        let mut state = Customer::default();
        check(&state, "no history");
        for (index, command) in commands.iter().enumerate() {
            let occurred_at_unix_micros = ledger_domain::occurred_at_unix_micros(command);
            if let Ok(events) = decide(&state, command) {
                for event in events {
                    state = evolve(state, &event, occurred_at_unix_micros);
                }
            }
            check(&state, &format!("run {run}, after command {index}"));
        }
    }
    check_long_histories();
}

/// A customer with `count` succeeded payments (a payment is kept for its refunds and disputes,
/// so a long history is a large state).
fn with_payments(count: usize) -> Customer {
    let usd = Currency::parse("USD").expect("USD");
    let mut customer = Customer::default();
    for n in 0..count {
        customer.payments.insert(
            format!("ch_{n:020}"),
            Payment {
                invoice_id: Some(format!("in_{n:020}")),
                subscription_id: Some("sub_1".to_owned()),
                amount: Money::new(1_000, usd),
                refunded: Money::new(0, usd),
                status: PaymentStatus::Succeeded,
                dispute_id: None,
            },
        );
    }
    customer
}

/// A long history's estimate grows with it and stays above what it holds.
fn check_long_histories() {
    let mut estimates = Vec::new();
    for count in [0, 1, 10, 100, 1_000] {
        let customer = with_payments(count);
        check(&customer, &format!("{count} payments"));
        estimates.push(Stream::Customer(customer).approximate_bytes());
    }
    assert!(estimates.is_sorted_by(|a, b| a < b), "{estimates:?}");
    assert_eq!(Stream::Empty.approximate_bytes(), size_of::<Stream>());
}
