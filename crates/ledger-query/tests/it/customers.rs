//! `/v1/customers*` over the read model the real projector builds from [`TestLedger::send_known_history`](ledger_testkit::ledger::TestLedger::send_known_history).

use actix_web::http::StatusCode;
use ledger_domain::proto;
use ledger_domain::proto::command::Kind;
use ledger_testkit::commands::{command, money};
use serde_json::json;

use crate::{Query, Setup, app, get};

async fn loaded() -> (Query, ledger_testkit::ledger::KnownCustomers) {
    let query = Query::start(Setup {
        customers: true,
        ..Setup::default()
    })
    .await;
    let history = query.ledger.send_known_history(false).await;
    query.customers_caught_up().await;
    (query, history)
}

#[actix_web::test]
async fn single_customer_has_exact_metrics() {
    let (query, history) = loaded().await;
    let app = app!(query);
    let ada = get!(
        app,
        &format!("/v1/customers/{}?min_position=8", history.ada)
    );
    assert_eq!(ada.status, StatusCode::OK, "{}", ada.json);
    assert_eq!(ada.position(), 8);
    assert_eq!(
        ada.json,
        json!({
            "customer_id": history.ada,
            "email": "ada@example.com",
            "name": "Ada Lovelace",
            "account_id": "cus_test",
            "provider": "stripe",
            "status": "active",
            "mrr_minor": 9_800,
            "mrr_currency": "USD",
            "mrr_currency_exponent": 2,
            "created_at": "2026-01-01T00:00:00Z",
            "last_event_at": "2026-01-01T00:00:00Z",
            "last_payment": {"status": "succeeded", "at": "2026-01-01T00:00:00Z"},
            "subscriptions": [{
                "subscription_id": "sub_1",
                "status": "active",
                "plan_id": "pro-monthly",
                "billing_interval": "month",
                "interval_count": 1,
                "quantity": 2,
                "unit_amount_minor": 4_900,
                "mrr_minor": 9_800,
                "currency": "USD",
                "currency_exponent": 2,
                "trial_end": null,
                "current_period_end": "2026-01-31T00:00:00Z",
                "cancel_at_period_end": false,
                "provider": "stripe"
            }],
            "lifetime": [{
                "currency": "USD", "currency_exponent": 2,
                "paid_minor": 9_800, "refunded_minor": 1_000
            }],
            "provider_accounts": [
                {"provider": "stripe", "account_id": "cus_ada"}
            ],
            "payments": [{
                "payment_id": "py_1",
                "occurred_at": "2026-01-01T00:00:00Z",
                "status": "succeeded",
                "amount_minor": 9_800,
                "currency": "USD",
                "currency_exponent": 2,
                "refunded_minor": 1_000,
                "refund_requested_minor": 0,
                "refundable_minor": 8_800
            }]
        })
    );
    let bob = get!(app, &format!("/v1/customers/{}", history.bob));
    assert_eq!(
        (
            &bob.json["status"],
            &bob.json["mrr_minor"],
            &bob.json["mrr_currency"],
            &bob.json["mrr_currency_exponent"],
            &bob.json["subscriptions"][0]["cancel_at_period_end"],
        ),
        (
            &json!("cancel_pending"),
            &json!(10_000),
            &json!("JPY"),
            &json!(0),
            &json!(true)
        )
    );
    let carol = get!(app, &format!("/v1/customers/{}", history.carol));
    assert_eq!(
        (
            &carol.json["status"],
            &carol.json["subscriptions"],
            &carol.json["last_payment"]
        ),
        (&json!("none"), &json!([]), &json!(null))
    );

    let unknown = get!(app, "/v1/customers/0190a0a0-0000-7000-8000-000000000000");
    assert_eq!(
        unknown.error(),
        (StatusCode::NOT_FOUND, "not_found".into(), None)
    );
    let malformed = get!(app, "/v1/customers/not-a-uuid");
    assert_eq!(
        malformed.error(),
        (
            StatusCode::BAD_REQUEST,
            "bad_parameter".into(),
            Some("id".into())
        )
    );
}

/// Each subscription names the provider holding it (decision 0032), which the dashboard asks
/// for a pause or resume: not the customer's registration provider.
#[actix_web::test]
async fn each_subscription_names_the_provider_holding_it() {
    let query = Query::start(Setup {
        customers: true,
        ..Setup::default()
    })
    .await;
    let held = query.ledger.send_subscriptions_held_elsewhere().await;
    query.customers_caught_up().await;
    let app = app!(query);
    let holders = |answer: &crate::Answer| {
        let subscriptions = answer.json["subscriptions"]
            .as_array()
            .expect("subscriptions");
        (
            answer.json["provider"].clone(),
            subscriptions
                .iter()
                .map(|s| (s["subscription_id"].clone(), s["provider"].clone()))
                .collect::<Vec<_>>(),
        )
    };
    let dan = get!(app, &format!("/v1/customers/{}", held.dan));
    assert_eq!(dan.status, StatusCode::OK, "{}", dan.json);
    assert_eq!(
        holders(&dan),
        (
            json!("internal"),
            vec![
                (json!("sub_own"), json!("internal")),
                (json!("sub_stripe"), json!("stripe")),
            ]
        )
    );
    let erin = get!(app, &format!("/v1/customers/{}", held.erin));
    assert_eq!(
        holders(&erin),
        (
            json!("stripe"),
            vec![(json!("sub_paypal"), json!("paypal"))]
        )
    );
}

/// A refund request still processing is not refundable again; a failed payment is not
/// refundable at all.
#[actix_web::test]
async fn payments_show_what_is_left_to_refund() {
    let (query, history) = loaded().await;
    let client = query.ledger.client();
    client
        .send(&command(
            "ada-rr-1",
            &history.ada,
            Kind::RequestRefund(proto::RefundRequested {
                refund_request_id: "rr_1".to_owned(),
                payment_id: "py_1".to_owned(),
                amount: Some(money(2_500, "USD")),
                reason: "requested_by_customer".to_owned(),
            }),
        ))
        .await
        .expect("accepted");
    client
        .send(&command(
            "ada-py-2",
            &history.ada,
            Kind::RecordPaymentFailed(proto::PaymentFailed {
                payment_id: "py_2".to_owned(),
                invoice_id: String::new(),
                subscription_id: "sub_1".to_owned(),
                amount: Some(money(9_800, "USD")),
                failure_code: "card_declined".to_owned(),
                failure_message: "Your card was declined.".to_owned(),
                attempt_count: 1,
            }),
        ))
        .await
        .expect("accepted");
    let app = app!(query);
    let ada = get!(
        app,
        &format!("/v1/customers/{}?min_position=10", history.ada)
    );
    assert_eq!(ada.status, StatusCode::OK, "{}", ada.json);
    let shown: Vec<_> = ada.json["payments"]
        .as_array()
        .expect("payments")
        .iter()
        .map(|payment| {
            (
                payment["payment_id"].clone(),
                payment["status"].clone(),
                payment["refunded_minor"].clone(),
                payment["refund_requested_minor"].clone(),
                payment["refundable_minor"].clone(),
            )
        })
        .collect();
    // Same business time: by payment id.
    assert_eq!(
        shown,
        vec![
            (
                json!("py_1"),
                json!("succeeded"),
                json!(1_000),
                json!(2_500),
                json!(6_300)
            ),
            (json!("py_2"), json!("failed"), json!(0), json!(0), json!(0)),
        ]
    );
}

fn emails(answer: &crate::Answer) -> Vec<String> {
    answer.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["email"].as_str().expect("email").to_owned())
        .collect()
}

#[actix_web::test]
async fn list_filters_searches_and_pages_by_keyset() {
    let (query, history) = loaded().await;
    let app = app!(query);
    let all = get!(app, "/v1/customers");
    assert_eq!(all.status, StatusCode::OK, "{}", all.json);
    assert_eq!(
        emails(&all),
        ["ada@example.com", "bob@example.com", "carol@example.com"]
    );
    assert_eq!(all.json["next_cursor"], json!(null));
    assert_eq!(
        all.json["items"][0],
        json!({
            "customer_id": history.ada,
            "email": "ada@example.com",
            "name": "Ada Lovelace",
            "account_id": "cus_test",
            "provider": "stripe",
            "status": "active",
            "mrr_minor": 9_800,
            "mrr_currency": "USD",
            "mrr_currency_exponent": 2,
            "created_at": "2026-01-01T00:00:00Z",
            "last_payment_status": "succeeded",
            "last_payment_at": "2026-01-01T00:00:00Z"
        })
    );

    // Pages of two, following the cursor.
    let first = get!(app, "/v1/customers?limit=2");
    assert_eq!(emails(&first), ["ada@example.com", "bob@example.com"]);
    assert_eq!(first.json["next_cursor"], json!(history.bob));
    let second = get!(
        app,
        &format!("/v1/customers?limit=2&cursor={}", history.bob)
    );
    assert_eq!(emails(&second), ["carol@example.com"]);
    assert_eq!(second.json["next_cursor"], json!(null));

    let filtered = |path: &'static str| path;
    for (path, expected) in [
        (
            filtered("/v1/customers?status=cancel_pending"),
            vec!["bob@example.com"],
        ),
        ("/v1/customers?status=none", vec!["carol@example.com"]),
        ("/v1/customers?plan=pro-monthly", vec!["ada@example.com"]),
        ("/v1/customers?provider=paypal", vec![]),
        ("/v1/customers?q=CAROL", vec!["carol@example.com"]),
        ("/v1/customers?q=cus_ada", vec!["ada@example.com"]),
        ("/v1/customers?currency=USD", vec!["ada@example.com"]),
        ("/v1/customers?currency=JPY", vec!["bob@example.com"]),
        ("/v1/customers?currency=EUR", vec![]),
        (
            "/v1/customers?q=example.com&status=active",
            vec!["ada@example.com"],
        ),
    ] {
        let answer = get!(app, path);
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.json);
        assert_eq!(emails(&answer), expected, "{path}");
    }
}

#[actix_web::test]
async fn timeline_lists_events_newest_first_in_pages() {
    let (query, history) = loaded().await;
    let app = app!(query);
    let page = get!(
        app,
        &format!("/v1/customers/{}/timeline?limit=3", history.ada)
    );
    assert_eq!(page.status, StatusCode::OK, "{}", page.json);
    let summary = |answer: &crate::Answer| -> Vec<(i64, String, Option<i64>)> {
        answer.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|item| {
                (
                    item["global_position"].as_i64().expect("position"),
                    item["event_type"].as_str().expect("type").to_owned(),
                    item["amount_minor"].as_i64(),
                )
            })
            .collect()
    };
    assert_eq!(
        summary(&page),
        vec![
            (6, "payment_refunded".to_owned(), Some(1_000)),
            (5, "payment_succeeded".to_owned(), Some(9_800)),
            (2, "subscription_started".to_owned(), None),
        ]
    );
    assert_eq!(page.json["items"][0]["currency"], json!("USD"));
    assert_eq!(
        page.json["items"][0]["occurred_at"],
        json!("2026-01-01T00:00:00Z")
    );
    assert_eq!(page.json["next_cursor"], json!("2"));
    let rest = get!(
        app,
        &format!("/v1/customers/{}/timeline?limit=3&cursor=2", history.ada)
    );
    assert_eq!(
        summary(&rest),
        vec![(1, "customer_registered".to_owned(), None)]
    );
    assert_eq!(rest.json["next_cursor"], json!(null));

    let unknown = get!(
        app,
        "/v1/customers/0190a0a0-0000-7000-8000-000000000000/timeline"
    );
    assert_eq!(unknown.error().0, StatusCode::NOT_FOUND);
}

/// What the dashboard follows after an operator's cancellation: the request (`processing`) and
/// the provider's answer (`failed` with its reason, or `complete`) on the timeline, paired by
/// their subscription.
#[actix_web::test]
async fn timeline_pairs_a_cancellation_request_with_the_providers_answer() {
    use ledger_domain::proto::{self, command::Kind};
    let (query, history) = loaded().await;
    let app = app!(query);
    let client = query.ledger.client();
    let mut step = 0;
    let mut send = async |kind: Kind, issuer: proto::Issuer| {
        step += 1;
        let mut command =
            ledger_testkit::commands::command(&format!("dashboard:{step}"), &history.ada, kind);
        let metadata = command.metadata.as_mut().expect("metadata");
        metadata.issuer = issuer as i32;
        metadata.occurred_at_unix_micros += step * 1_000_000;
        let accepted = client.send(&command).await.expect("accepted");
        let position = accepted.events.last().expect("an event").global_position;
        let page = get!(
            app,
            &format!(
                "/v1/customers/{}/timeline?limit=1&min_position={position}",
                history.ada
            )
        );
        assert_eq!(page.status, StatusCode::OK, "{}", page.json);
        let item = &page.json["items"][0];
        assert_eq!(item["global_position"], json!(position));
        (
            item["event_type"].as_str().expect("type").to_owned(),
            item["status"].as_str().expect("status").to_owned(),
            item["subscription_id"].clone(),
            item["failure_code"].clone(),
            item["failure_message"].clone(),
        )
    };
    let request = || {
        Kind::RequestCancellation(proto::CancellationRequested {
            subscription_id: "sub_1".to_owned(),
            at_period_end: false,
            reason: "requested by an operator from the dashboard".to_owned(),
        })
    };
    let processing = (
        "cancellation_requested".to_owned(),
        "processing".to_owned(),
        json!("sub_1"),
        json!(null),
        json!(null),
    );
    assert_eq!(send(request(), proto::Issuer::Internal).await, processing);
    let refusal = Kind::FailCancellation(proto::CancellationFailed {
        subscription_id: "sub_1".to_owned(),
        failure_code: "resource_missing".to_owned(),
        failure_message: "No such subscription: 'sub_1'".to_owned(),
    });
    assert_eq!(
        send(refusal, proto::Issuer::PaymentProvider).await,
        (
            "cancellation_failed".to_owned(),
            "failed".to_owned(),
            json!("sub_1"),
            json!("resource_missing"),
            json!("No such subscription: 'sub_1'"),
        )
    );
    assert_eq!(send(request(), proto::Issuer::Internal).await, processing);
    let confirmation = Kind::ConfirmCancellation(proto::SubscriptionCancelled {
        subscription_id: "sub_1".to_owned(),
        reason: String::new(),
    });
    assert_eq!(
        send(confirmation, proto::Issuer::PaymentProvider).await,
        (
            "subscription_cancelled".to_owned(),
            "complete".to_owned(),
            json!("sub_1"),
            json!(null),
            json!(null),
        )
    );
    // Events about no subscription carry none.
    let profile = Kind::UpdateCustomerProfile(proto::CustomerProfileUpdated {
        email: None,
        name: Some("Ada King".to_owned()),
    });
    assert_eq!(
        send(profile, proto::Issuer::Internal).await,
        (
            "customer_profile_updated".to_owned(),
            "complete".to_owned(),
            json!(null),
            json!(null),
            json!(null),
        )
    );
}

#[actix_web::test]
async fn malformed_parameters_are_refused_by_name() {
    let query = Query::start(Setup::default()).await;
    let app = app!(query);
    for (path, parameter) in [
        ("/v1/customers?limit=0", "limit"),
        ("/v1/customers?limit=501", "limit"),
        ("/v1/customers?limit=ten", "limit"),
        ("/v1/customers?status=happy", "status"),
        ("/v1/customers?provider=bank", "provider"),
        ("/v1/customers?cursor=zzz", "cursor"),
        ("/v1/customers?currency=usd", "currency"),
        ("/v1/customers/not-a-uuid/mrr", "id"),
        ("/v1/customers?sort=email", "sort"),
        ("/v1/customers?limit=1&limit=2", "limit"),
        ("/v1/customers?min_position=-1", "min_position"),
        (
            "/v1/customers/0190a0a0-0000-7000-8000-000000000000/timeline?cursor=x",
            "cursor",
        ),
        (
            "/v1/customers/0190a0a0-0000-7000-8000-000000000000/timeline?limit=1001",
            "limit",
        ),
        ("/v1/metrics/summary", "currency"),
        ("/v1/metrics/summary?currency=usd", "currency"),
        ("/v1/metrics/summary?currency=USD&at=2026-02-30", "at"),
        (
            "/v1/metrics/summary?currency=USD&reporting_currency=EURO",
            "reporting_currency",
        ),
        ("/v1/metrics/mrr?currency=USD&interval=hour", "interval"),
        (
            "/v1/metrics/mrr?currency=USD&from=2026-02-01&to=2026-01-01",
            "from",
        ),
        (
            "/v1/metrics/mrr?currency=USD&from=2000-01-01&to=2026-01-01&interval=month",
            "from",
        ),
        (
            "/v1/metrics/mrr?currency=USD&from=2020-01-01&to=2026-01-01&interval=day",
            "interval",
        ),
        ("/v1/metrics/churn?from=2010-01-01&to=2026-01-01", "from"),
        ("/v1/metrics/churn?to=yesterday", "to"),
        ("/v1/metrics/cohorts?from=2026-01-01", "currency"),
    ] {
        let answer = get!(app, path);
        assert_eq!(
            answer.error(),
            (
                StatusCode::BAD_REQUEST,
                if parameter == "sort" {
                    "unknown_parameter"
                } else {
                    "bad_parameter"
                }
                .into(),
                Some(parameter.into())
            ),
            "{path}"
        );
    }
}

/// A customer's MRR over time from the real revenue projector: each change, its movement, and
/// the MRR after it, per currency.
#[actix_web::test]
async fn customer_mrr_follows_its_movements() {
    let query = Query::start(Setup {
        customers: true,
        revenue: false,
        revenue_projector: true,
        ..Setup::default()
    })
    .await;
    let history = query.ledger.send_known_history(false).await;
    query.revenue_caught_up().await;
    let app = app!(query);
    let ada = get!(
        app,
        &format!("/v1/customers/{}/mrr?min_position=8", history.ada)
    );
    assert_eq!(ada.status, StatusCode::OK, "{}", ada.json);
    assert_eq!(ada.position(), 8);
    assert_eq!(
        ada.json,
        json!({
            "customer_id": history.ada,
            "currencies": [{
                "currency": "USD",
                "exponent": 2,
                "points": [
                    {"day": "2026-01-01", "movement": "new", "delta_minor": 9_800, "mrr_minor": 9_800}
                ]
            }]
        })
    );
    let bob = get!(app, &format!("/v1/customers/{}/mrr", history.bob));
    assert_eq!(bob.json["currencies"][0]["currency"], json!("JPY"));
    assert_eq!(bob.json["currencies"][0]["exponent"], json!(0));
    assert_eq!(
        bob.json["currencies"][0]["points"][0]["mrr_minor"],
        json!(10_000)
    );
    // Carol never subscribed: no series, not an error.
    let carol = get!(app, &format!("/v1/customers/{}/mrr", history.carol));
    assert_eq!(carol.status, StatusCode::OK);
    assert_eq!(carol.json["currencies"], json!([]));
}
