//! The revenue read model against real PostgreSQL and NATS: random histories against a
//! brute-force oracle, and a known history with exact figures.

mod oracle;

use std::collections::BTreeMap;

use ledger_domain::{ChurnRecognition, DiscountsInMrr, Event, MrrRules};
use ledger_projector::{Projected, ProjectorConfig};
use ledger_testkit::history::{self, Rng};
use ledger_testkit::ledger::TestLedger;
use ledger_testkit::projector_faults;
use projector_revenue::{RevenueProjector, RevenueSettings};
use proptest::prelude::*;
use time::{Date, UtcOffset};
use uuid::Uuid;

use crate::oracle::Expected;

/// Appends `requests` straight to the store, in batches.
async fn append(ledger: &TestLedger, generated: Vec<history::Generated>) {
    let requests: Vec<_> = generated.into_iter().map(|one| one.request).collect();
    let writer = ledger.store.writer().await.expect("writer lock");
    for chunk in requests.chunks(500) {
        for outcome in writer.append(chunk.to_vec()).await.expect("append") {
            outcome.expect("appended");
        }
    }
}

/// The table's events as the oracle takes them: customer, UTC day, event; in ledger order.
async fn dated_events(ledger: &TestLedger) -> Vec<(Uuid, Date, Event)> {
    ledger
        .table_events()
        .await
        .into_iter()
        .map(|recorded| {
            let projected = Projected::decode(recorded).expect("decodes");
            let recorded = projected.recorded;
            (
                recorded.stream_id,
                recorded.event.occurred_at.to_offset(UtcOffset::UTC).date(),
                projected.event,
            )
        })
        .collect()
}

fn units(text: &str) -> i128 {
    text.parse().expect("an integer amount")
}

/// What the read model holds, in the oracle's shape.
async fn actual(ledger: &TestLedger) -> Expected {
    let client = ledger.database().client().await;
    let mut actual = Expected::default();
    for row in client
        .query(
            "SELECT customer_id, currency, day, movement, delta_units::text FROM revenue.movements",
            &[],
        )
        .await
        .expect("movements")
    {
        actual.movements.insert(
            (row.get(0), row.get(1), row.get(2)),
            (row.get(3), units(row.get(4))),
        );
    }
    for row in client
        .query(
            "SELECT currency, day, mrr_units::text, paying_customers FROM revenue.daily_mrr",
            &[],
        )
        .await
        .expect("daily")
    {
        actual
            .daily
            .insert((row.get(0), row.get(1)), (units(row.get(2)), row.get(3)));
    }
    for row in client
        .query(
            "SELECT currency, month, paying_customers_start, churned_customers, \
             mrr_start_units::text FROM revenue.monthly_churn",
            &[],
        )
        .await
        .expect("monthly")
    {
        actual.monthly.insert(
            (row.get(0), row.get(1)),
            (row.get(2), row.get(3), units(row.get(4))),
        );
    }
    for row in client
        .query(
            "SELECT currency, cohort_month, month, customers, mrr_units::text FROM revenue.cohorts",
            &[],
        )
        .await
        .expect("cohorts")
    {
        actual.cohorts.insert(
            (row.get(0), row.get(1), row.get(2)),
            (row.get(3), units(row.get(4))),
        );
    }
    actual
}

fn assert_same<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    what: &str,
    actual: &BTreeMap<K, V>,
    expected: &BTreeMap<K, V>,
) {
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(key, value)| actual.get(key) != Some(value))
        .map(|(key, value)| (key, value, actual.get(key)))
        .take(5)
        .collect();
    let extra: Vec<_> = actual
        .keys()
        .filter(|key| !expected.contains_key(key))
        .take(5)
        .collect();
    assert!(
        wrong.is_empty() && extra.is_empty(),
        "{what}: (key, expected, actual) {wrong:?}; unexpected keys {extra:?}"
    );
}

const SETTINGS: [RevenueSettings; 3] = [
    RevenueSettings {
        rules: MrrRules {
            discounts: DiscountsInMrr::Recurring,
            churn_recognition: ChurnRecognition::Effective,
        },
        past_due_churn_days: None,
    },
    RevenueSettings {
        rules: MrrRules {
            discounts: DiscountsInMrr::All,
            churn_recognition: ChurnRecognition::Requested,
        },
        past_due_churn_days: Some(7),
    },
    RevenueSettings {
        rules: MrrRules {
            discounts: DiscountsInMrr::None,
            churn_recognition: ChurnRecognition::Effective,
        },
        past_due_churn_days: Some(3),
    },
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Thousands of events over five currencies, out-of-order days, every kind of subscription
    /// change: the tables equal the oracle's figures, whatever the batch boundaries.
    #[test]
    fn read_model_equals_the_brute_force_oracle(
        seed in any::<u64>(),
        settings_index in 0..SETTINGS.len(),
        page_events in prop::sample::select(vec![1u64, 7, 97, 10_000]),
    ) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let settings = SETTINGS[settings_index];
            let ledger = TestLedger::new().await;
            let mut rng = Rng::new(seed);
            append(&ledger, history::generate(&mut rng, 40, 60)).await;
            let events = dated_events(&ledger).await;
            let config = ProjectorConfig {
                table_page_events: page_events,
                ..ProjectorConfig::default()
            };
            let projector = ledger
                .start_projector(RevenueProjector::new(ledger.store.clone(), settings), config, false)
                .await;
            assert!(ledger.projector_caught_up("revenue").await, "caught up");
            projector.stop().await;
            let expected = oracle::expected(&events, &settings);
            let actual = actual(&ledger).await;
            assert!(events.len() > 1_000, "a history of thousands of events: {}", events.len());
            assert!(expected.movements.len() > 100, "movements: {}", expected.movements.len());
            assert_same("movements", &actual.movements, &expected.movements);
            assert_same("daily", &actual.daily, &expected.daily);
            assert_same("monthly", &actual.monthly, &expected.monthly);
            assert_same("cohorts", &actual.cohorts, &expected.cohorts);
        });
    }
}

#[tokio::test]
async fn killed_mid_stream_resumes_to_the_same_tables_as_a_fresh_rebuild() {
    projector_faults::killed_mid_stream_resumes_to_a_fresh_rebuild(|ledger| {
        RevenueProjector::new(ledger.store.clone(), SETTINGS[1])
    })
    .await;
}

#[tokio::test]
async fn redelivered_messages_change_nothing() {
    projector_faults::redelivered_messages_change_nothing(|ledger| {
        RevenueProjector::new(ledger.store.clone(), SETTINGS[1])
    })
    .await;
}

#[tokio::test]
async fn a_rebuild_while_commands_arrive_ends_as_a_fresh_rebuild() {
    projector_faults::rebuild_while_appending_ends_as_a_fresh_rebuild(|ledger| {
        RevenueProjector::new(ledger.store.clone(), SETTINGS[1])
    })
    .await;
}
