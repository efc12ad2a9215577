//! The revenue read model against real PostgreSQL and NATS: random histories against a
//! brute-force oracle, and a known history with exact figures.

mod oracle;

use std::collections::BTreeMap;

use ledger_devenv::history::{self, Rng, Shape};
use ledger_domain::proto::{self, command::Kind};
use ledger_domain::{ChurnRecognition, DiscountsInMrr, MrrRules, UnpaidSubscriptions};
use ledger_projector::{Projected, ProjectorConfig};
use ledger_testkit::commands::{NOW_MICROS, metadata, money, register};
use ledger_testkit::ledger::TestLedger;
use ledger_testkit::projector_faults;
use projector_revenue::{RevenueProjector, RevenueSettings};
use proptest::prelude::*;
use time::UtcOffset;

use crate::oracle::{DatedEvent, Expected};

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

/// The table's events as the oracle takes them: customer, UTC day, `occurred_at` in Unix
/// microseconds, event; in ledger order.
async fn dated_events(ledger: &TestLedger) -> Vec<DatedEvent> {
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
                recorded.event.occurred_at_unix_micros(),
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
            unpaid_subscriptions: UnpaidSubscriptions::Excluded,
        },
        past_due_churn_days: None,
    },
    RevenueSettings {
        rules: MrrRules {
            discounts: DiscountsInMrr::All,
            churn_recognition: ChurnRecognition::Requested,
            unpaid_subscriptions: UnpaidSubscriptions::Counted,
        },
        past_due_churn_days: Some(7),
    },
    RevenueSettings {
        rules: MrrRules {
            discounts: DiscountsInMrr::None,
            churn_recognition: ChurnRecognition::Effective,
            unpaid_subscriptions: UnpaidSubscriptions::Excluded,
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
            append(
                &ledger,
                history::generate(&mut rng, Shape { customers: 40, steps: 60, late_percent: 15 }),
            )
            .await;
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

/// A command dated `day` days after 2026-01-01.
fn on_day(day: i64, key: &str, customer_id: &str, kind: Kind) -> proto::Command {
    let mut metadata = metadata(key, customer_id);
    metadata.occurred_at_unix_micros = NOW_MICROS + day * 86_400_000_000;
    proto::Command {
        metadata: Some(metadata),
        kind: Some(kind),
    }
}

fn subscription(
    id: &str,
    amount_minor: i64,
    currency: &str,
    interval: proto::BillingInterval,
) -> Kind {
    Kind::StartSubscription(proto::SubscriptionStarted {
        subscription_id: id.to_owned(),
        plan: Some(proto::Plan {
            plan_id: format!("plan-{amount_minor}"),
            unit_price: Some(money(amount_minor, currency)),
            interval: interval as i32,
            interval_count: 1,
        }),
        quantity: 1,
        trial_end_unix_seconds: None,
        current_period_end_unix_seconds: NOW_MICROS / 1_000_000 + 400 * 86_400,
        discount: None,
    })
}

fn plan_change(id: &str, amount_minor: i64, currency: &str) -> Kind {
    Kind::ChangePlan(proto::PlanChanged {
        subscription_id: id.to_owned(),
        plan: Some(proto::Plan {
            plan_id: format!("plan-{amount_minor}"),
            unit_price: Some(money(amount_minor, currency)),
            interval: proto::BillingInterval::Month as i32,
            interval_count: 1,
        }),
        quantity: 1,
        discount: None,
    })
}

/// The rows of `sql`, each as PostgreSQL's text of a row: `(USD,2026-03-03,20000)`.
async fn rows(ledger: &TestLedger, sql: &str) -> Vec<String> {
    let client = ledger.database().client().await;
    client
        .query(&format!("SELECT q::text FROM ({sql}) q"), &[])
        .await
        .expect(sql)
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Ada, Bob and Dan pay in USD, Cleo in EUR; Dan's start and Cleo's downgrade arrive last,
/// dated weeks earlier. Every figure is worked out by hand in the comments.
async fn send_known_history(ledger: &TestLedger) {
    use proto::BillingInterval::{Month, Year};
    let client = ledger.client();
    let send = |command: proto::Command| {
        let client = client.clone();
        async move { client.send(&command).await.expect("accepted").customer_id }
    };
    let ada = send(register("ada", "ada@example.com")).await;
    let bob = send(register("bob", "bob@example.com")).await;
    let cleo = send(register("cleo", "cleo@example.com")).await;
    let dan = send(register("dan", "dan@example.com")).await;
    // Ada: new 100.00 on 01-05, expansion to 150.00 on 02-10, churn on 03-03.
    send(on_day(
        4,
        "ada-1",
        &ada,
        subscription("a1", 10_000, "USD", Month),
    ))
    .await;
    // Bob: 1,200.00 a year = 100.00 a month from 01-20; a second plan of 50.00 from 02-01.
    send(on_day(
        19,
        "bob-1",
        &bob,
        subscription("b1", 120_000, "USD", Year),
    ))
    .await;
    // Cleo: a trial from 01-10 (no MRR), converted on 01-24: new 99.00 EUR.
    let mut trial = subscription("c1", 9_900, "EUR", Month);
    if let Kind::StartSubscription(started) = &mut trial {
        started.trial_end_unix_seconds = Some(NOW_MICROS / 1_000_000 + 23 * 86_400);
    }
    send(on_day(9, "cleo-1", &cleo, trial)).await;
    send(on_day(
        23,
        "cleo-2",
        &cleo,
        Kind::ConvertTrial(proto::TrialConverted {
            subscription_id: "c1".to_owned(),
        }),
    ))
    .await;
    // Its current period ends on 04-01 (as its invoices would have set it).
    let mut second_plan = subscription("b2", 5_000, "USD", Month);
    if let Kind::StartSubscription(started) = &mut second_plan {
        started.current_period_end_unix_seconds = NOW_MICROS / 1_000_000 + 90 * 86_400;
    }
    send(on_day(31, "bob-2", &bob, second_plan)).await;
    send(on_day(40, "ada-2", &ada, plan_change("a1", 15_000, "USD"))).await;
    send(on_day(
        61,
        "ada-3",
        &ada,
        Kind::RequestCancellation(proto::CancellationRequested {
            subscription_id: "a1".to_owned(),
            at_period_end: false,
            reason: "too_expensive".to_owned(),
        }),
    ))
    .await;
    send(on_day(
        61,
        "ada-4",
        &ada,
        Kind::ConfirmCancellation(proto::SubscriptionCancelled {
            subscription_id: "a1".to_owned(),
            reason: String::new(),
        }),
    ))
    .await;
    // Bob asks to cancel his second plan at the period end: still MRR while it runs, none
    // from 04-01 (a contraction of 50.00) although no confirmation ever comes.
    send(on_day(
        73,
        "bob-3",
        &bob,
        Kind::RequestCancellation(proto::CancellationRequested {
            subscription_id: "b2".to_owned(),
            at_period_end: true,
            reason: String::new(),
        }),
    ))
    .await;
    // Late: Dan's 50.00 start dated 01-12, Cleo's downgrade to 49.00 dated 01-30.
    send(on_day(
        11,
        "dan-1",
        &dan,
        subscription("d1", 5_000, "USD", Month),
    ))
    .await;
    send(on_day(29, "cleo-3", &cleo, plan_change("c1", 4_900, "EUR"))).await;
}

#[tokio::test]
async fn a_known_history_gives_the_figures_worked_out_by_hand() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let config = ProjectorConfig {
        live_batch_events_max: 2,
        ..ProjectorConfig::default()
    };
    let projector = ledger
        .start_projector(
            RevenueProjector::new(ledger.store.clone(), RevenueSettings::default()),
            config,
            false,
        )
        .await;
    send_known_history(&ledger).await;
    assert!(ledger.projector_caught_up("revenue").await);

    // currency, day, mrr, arr, new, expansion, contraction, churn, reactivation, paying, arpa
    let days_with_movements = rows(
        &ledger,
        "SELECT currency, day, mrr, arr, new, expansion, contraction, churn, reactivation, \
             paying_customers, arpa FROM revenue.daily_mrr \
         WHERE new <> 0 OR expansion <> 0 OR contraction <> 0 OR churn <> 0 OR reactivation <> 0 \
         ORDER BY currency, day",
    )
    .await;
    assert_eq!(
        days_with_movements,
        [
            "(EUR,2026-01-24,9900,118800,9900,0,0,0,0,1,9900)",
            "(EUR,2026-01-30,4900,58800,0,0,-5000,0,0,1,4900)",
            "(USD,2026-01-05,10000,120000,10000,0,0,0,0,1,10000)",
            "(USD,2026-01-12,15000,180000,5000,0,0,0,0,2,7500)",
            "(USD,2026-01-20,25000,300000,10000,0,0,0,0,3,8333)",
            "(USD,2026-02-01,30000,360000,0,5000,0,0,0,3,10000)",
            "(USD,2026-02-10,35000,420000,0,5000,0,0,0,3,11667)",
            "(USD,2026-03-03,20000,240000,0,0,0,-15000,0,2,10000)",
            "(USD,2026-04-01,15000,180000,0,0,-5000,0,0,2,7500)",
        ]
    );
    assert_eq!(
        rows(
            &ledger,
            "SELECT count(*) FROM revenue.daily_mrr WHERE currency = 'USD'"
        )
        .await,
        ["(87)"],
        "every day from 01-05 to 04-01"
    );
    // currency, month, paying at start, churned, MRR at start, new, expansion, contraction,
    // churn, reactivation, customer churn, gross MRR churn, net MRR churn, ARPA, LTV
    assert_eq!(
        rows(
            &ledger,
            "SELECT currency, month, paying_customers_start, churned_customers, \
             mrr_start, new, expansion, contraction, churn, reactivation, customer_churn_rate, \
             gross_mrr_churn_rate, net_mrr_churn_rate, arpa_start, ltv \
             FROM revenue.monthly_churn ORDER BY currency, month"
        )
        .await,
        [
            "(EUR,2026-01-01,0,0,0,9900,0,-5000,0,0,,,,,)",
            "(USD,2026-01-01,0,0,0,25000,0,0,0,0,,,,,)",
            "(USD,2026-02-01,3,0,25000,0,10000,0,0,0,0.000000,0.000000,-0.400000,8333,)",
            "(USD,2026-03-01,3,1,35000,0,0,0,-15000,0,0.333333,0.428571,0.428571,11667,35000)",
            "(USD,2026-04-01,2,0,20000,0,0,-5000,0,0,0.000000,0.250000,0.250000,10000,)",
        ]
    );
    assert_eq!(
        rows(
            &ledger,
            "SELECT currency, cohort_month, month, customers, mrr \
             FROM revenue.cohorts ORDER BY currency, cohort_month, month"
        )
        .await,
        [
            "(EUR,2026-01-01,2026-01-01,1,4900)",
            "(USD,2026-01-01,2026-01-01,3,25000)",
            "(USD,2026-01-01,2026-02-01,3,35000)",
            "(USD,2026-01-01,2026-03-01,2,20000)",
            "(USD,2026-01-01,2026-04-01,2,15000)",
        ]
    );
    assert_eq!(
        rows(
            &ledger,
            "SELECT customer_id IS NOT NULL, currency, day, movement, delta \
             FROM revenue.mrr_movements WHERE day = '2026-03-03'"
        )
        .await,
        ["(t,USD,2026-03-03,churn,-15000)"]
    );
    projector.stop().await;

    // Recognising churn when it is requested is a new definition: the read model is rebuilt
    // with it, and Bob's request on 03-15 contracts his MRR by 50.00 that day (and nothing
    // more on 04-01, the period end).
    let requested = RevenueSettings {
        rules: MrrRules {
            churn_recognition: ChurnRecognition::Requested,
            ..MrrRules::default()
        },
        ..RevenueSettings::default()
    };
    let projector = ledger
        .start_projector(
            RevenueProjector::new(ledger.store.clone(), requested),
            ProjectorConfig::default(),
            false,
        )
        .await;
    assert!(
        ledger_testkit::ledger::eventually(20_000, || async {
            rows(&ledger, "SELECT churn_recognition FROM revenue.settings").await == ["(requested)"]
                && ledger.projector_caught_up("revenue").await
        })
        .await,
        "rebuilt with the new settings"
    );
    assert_eq!(
        rows(
            &ledger,
            "SELECT day, mrr, contraction FROM revenue.daily_mrr \
             WHERE currency = 'USD' AND day >= '2026-03-03' AND contraction <> 0"
        )
        .await,
        ["(2026-03-15,15000,-5000)"]
    );
    projector.stop().await;
    writer.stop().await.expect("writer");
}

/// Starts the revenue projector with `settings` and waits until it has caught up with them
/// (a change of settings rebuilds the read model).
async fn project(
    ledger: &TestLedger,
    settings: RevenueSettings,
) -> ledger_testkit::ledger::RunningProjector {
    let projector = ledger
        .start_projector(
            RevenueProjector::new(ledger.store.clone(), settings),
            ProjectorConfig::default(),
            false,
        )
        .await;
    assert!(ledger.projector_caught_up("revenue").await, "started");
    let expected = format!(
        "({},{})",
        settings.rules.churn_recognition, settings.rules.unpaid_subscriptions
    );
    assert!(
        ledger_testkit::ledger::eventually(20_000, || async {
            rows(
                ledger,
                "SELECT churn_recognition, unpaid_subscriptions FROM revenue.settings",
            )
            .await
                == [expected.clone()]
                && ledger.projector_caught_up("revenue").await
        })
        .await,
        "caught up with {settings:?}"
    );
    projector
}

/// Sends `command`: `accepted`, or the rejection's code.
async fn deliver(client: &ledger_bus::Client, command: &proto::Command) -> String {
    match client.send(command).await {
        Ok(_) => "accepted".to_owned(),
        Err(ledger_bus::SendError::Rejected(rejected)) => rejected.code,
        Err(error) => panic!("not answered: {error}"),
    }
}

/// Issue 11, item 4: 60.00 from Jan 8, a change to 90.00 dated Mar 1 and one to 70.00 dated
/// Feb 10 arrive in each of the six orders (one customer per order), and are all delivered
/// again: every customer's MRR is 90.00 from Mar 1.
#[tokio::test]
async fn late_older_plan_changes_end_at_the_newest_in_every_arrival_order() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let sent = ledger.send_plan_changes_in_every_order().await;
    assert_eq!(
        sent.answers.into_iter().collect::<Vec<_>>(),
        ["accepted", "stale", "unknown_subscription"]
    );
    let projector = project(&ledger, RevenueSettings::default()).await;
    // Per customer: MRR at the end of Mar 1 (the sum of its movements), and its movements after.
    assert_eq!(
        rows(
            &ledger,
            "SELECT sum(delta) FILTER (WHERE day <= '2026-03-01'), \
                    count(*) FILTER (WHERE day > '2026-03-01') \
             FROM revenue.mrr_movements GROUP BY customer_id",
        )
        .await,
        ["(9000,0)"; 6]
    );
    assert_eq!(
        rows(
            &ledger,
            "SELECT mrr, paying_customers FROM revenue.daily_mrr \
             WHERE currency = 'USD' AND day = (SELECT max(day) FROM revenue.daily_mrr)",
        )
        .await,
        ["(54000,6)"]
    );
    projector.stop().await;
    writer.stop().await.expect("writer");
}

/// Issue 11, item 5: a trial whose first charge fails and which is then cancelled was never
/// paid: no `new`, no `churn`, no cohort by default; counting unpaid subscriptions keeps the
/// other reading. A trial paid after a failed first charge counts from the payment.
#[tokio::test]
async fn a_trial_never_paid_counts_no_mrr_while_past_due_by_default() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    for (name, paid_later) in [("never", false), ("late", true)] {
        let customer = client
            .send(&register(name, &format!("{name}@example.com")))
            .await
            .expect("registered")
            .customer_id;
        let mut trial = subscription("s1", 6_000, "USD", proto::BillingInterval::Month);
        if let Kind::StartSubscription(started) = &mut trial {
            started.trial_end_unix_seconds = Some(NOW_MICROS / 1_000_000 + 21 * 86_400);
        }
        let payment = |id: &str| proto::PaymentSucceeded {
            payment_id: id.to_owned(),
            invoice_id: String::new(),
            subscription_id: "s1".to_owned(),
            amount: Some(money(6_000, "USD")),
        };
        let failed = Kind::RecordPaymentFailed(proto::PaymentFailed {
            payment_id: "py_1".to_owned(),
            invoice_id: String::new(),
            subscription_id: "s1".to_owned(),
            amount: Some(money(6_000, "USD")),
            failure_code: "card_declined".to_owned(),
            failure_message: String::new(),
            attempt_count: 1,
        });
        let mut commands = vec![
            on_day(7, &format!("{name}-1"), &customer, trial),
            on_day(21, &format!("{name}-2"), &customer, failed),
        ];
        if paid_later {
            commands.push(on_day(
                24,
                &format!("{name}-3"),
                &customer,
                Kind::RecordPaymentSucceeded(payment("py_2")),
            ));
        }
        commands.push(on_day(
            35,
            &format!("{name}-4"),
            &customer,
            Kind::ConfirmCancellation(proto::SubscriptionCancelled {
                subscription_id: "s1".to_owned(),
                reason: String::new(),
            }),
        ));
        for command in &commands {
            assert_eq!(deliver(&client, command).await, "accepted");
        }
    }
    let movements = "SELECT day, movement, delta FROM revenue.mrr_movements ORDER BY day";
    let cohorts = "SELECT cohort_month, month, customers, mrr FROM revenue.cohorts ORDER BY cohort_month, month";
    let projector = project(&ledger, RevenueSettings::default()).await;
    // Only the trial paid on 01-25 counts: from its payment to its cancellation.
    assert_eq!(
        rows(&ledger, movements).await,
        ["(2026-01-25,new,6000)", "(2026-02-05,churn,-6000)"]
    );
    assert_eq!(
        rows(&ledger, cohorts).await,
        [
            "(2026-01-01,2026-01-01,1,6000)",
            "(2026-01-01,2026-02-01,0,0)"
        ]
    );
    projector.stop().await;
    let counted = RevenueSettings {
        rules: MrrRules {
            unpaid_subscriptions: UnpaidSubscriptions::Counted,
            ..MrrRules::default()
        },
        ..RevenueSettings::default()
    };
    let projector = project(&ledger, counted).await;
    // Both count from the failed first charge on 01-22 (past due) to the cancellation.
    assert_eq!(
        rows(&ledger, movements).await,
        [
            "(2026-01-22,new,6000)",
            "(2026-01-22,new,6000)",
            "(2026-02-05,churn,-6000)",
            "(2026-02-05,churn,-6000)",
        ]
    );
    assert_eq!(
        rows(&ledger, cohorts).await,
        [
            "(2026-01-01,2026-01-01,2,12000)",
            "(2026-01-01,2026-02-01,0,0)"
        ]
    );
    projector.stop().await;
    writer.stop().await.expect("writer");
}

/// Issue 11, item 6: a cancellation at period end requested on 01-20 for a period ending on
/// 02-15 takes the MRR to zero on 02-15 whether or not it is ever confirmed (one churn), and
/// not at all when it is withdrawn before; under `requested` churn is on the request day.
#[tokio::test]
async fn a_cancellation_at_period_end_ends_the_mrr_on_the_period_end_day() {
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let client = ledger.client();
    let mut customers = Vec::new();
    for name in ["unconfirmed", "confirmed", "withdrawn"] {
        let customer = client
            .send(&register(name, &format!("{name}@example.com")))
            .await
            .expect("registered")
            .customer_id;
        let mut started = subscription("s1", 6_000, "USD", proto::BillingInterval::Month);
        if let Kind::StartSubscription(body) = &mut started {
            body.current_period_end_unix_seconds = NOW_MICROS / 1_000_000 + 45 * 86_400;
        }
        let mut commands = vec![
            on_day(4, &format!("{name}-1"), &customer, started),
            on_day(
                19,
                &format!("{name}-2"),
                &customer,
                Kind::RequestCancellation(proto::CancellationRequested {
                    subscription_id: "s1".to_owned(),
                    at_period_end: true,
                    reason: String::new(),
                }),
            ),
        ];
        match name {
            "confirmed" => commands.push(on_day(
                46,
                "confirmed-3",
                &customer,
                Kind::ConfirmCancellation(proto::SubscriptionCancelled {
                    subscription_id: "s1".to_owned(),
                    reason: String::new(),
                }),
            )),
            "withdrawn" => commands.push(on_day(
                31,
                "withdrawn-3",
                &customer,
                Kind::ReactivateSubscription(proto::SubscriptionReactivated {
                    subscription_id: "s1".to_owned(),
                }),
            )),
            _ => {}
        }
        for command in &commands {
            assert_eq!(deliver(&client, command).await, "accepted");
        }
        customers.push(customer);
    }
    let movements = |customer: &str| {
        format!(
            "SELECT day, movement, delta FROM revenue.mrr_movements \
             WHERE customer_id = '{customer}' ORDER BY day"
        )
    };
    let projector = project(&ledger, RevenueSettings::default()).await;
    for customer in &customers[..2] {
        assert_eq!(
            rows(&ledger, &movements(customer)).await,
            ["(2026-01-05,new,6000)", "(2026-02-15,churn,-6000)"]
        );
    }
    assert_eq!(
        rows(&ledger, &movements(&customers[2])).await,
        ["(2026-01-05,new,6000)"]
    );
    // On 03-31 only the withdrawn cancellation still counts; February holds both churns.
    assert_eq!(
        rows(
            &ledger,
            "SELECT month, paying_customers_start, churned_customers, churn \
             FROM revenue.monthly_churn WHERE currency = 'USD' ORDER BY month"
        )
        .await,
        ["(2026-01-01,0,0,0)", "(2026-02-01,3,2,-12000)"]
    );
    assert_eq!(
        rows(
            &ledger,
            "SELECT month, customers, mrr FROM revenue.cohorts WHERE month >= '2026-02-01'"
        )
        .await,
        ["(2026-02-01,1,6000)"]
    );
    projector.stop().await;
    let requested = RevenueSettings {
        rules: MrrRules {
            churn_recognition: ChurnRecognition::Requested,
            ..MrrRules::default()
        },
        ..RevenueSettings::default()
    };
    let projector = project(&ledger, requested).await;
    for customer in &customers[..2] {
        assert_eq!(
            rows(&ledger, &movements(customer)).await,
            ["(2026-01-05,new,6000)", "(2026-01-20,churn,-6000)"]
        );
    }
    assert_eq!(
        rows(&ledger, &movements(&customers[2])).await,
        [
            "(2026-01-05,new,6000)",
            "(2026-01-20,churn,-6000)",
            "(2026-02-01,reactivation,6000)"
        ]
    );
    projector.stop().await;
    writer.stop().await.expect("writer");
}
