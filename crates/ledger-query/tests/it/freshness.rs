//! The cache follows the projectors' announcements, and `?min_position=` waits for them.

use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::json;

use crate::{Query, Setup, app, get};

/// Moves the revenue fixture to `position` with USD's last day at `mrr`, as a projector's
/// commit would, without announcing it.
async fn commit_revenue(query: &Query, position: i64, mrr: i64) {
    let admin = query.ledger.database().client().await;
    admin
        .batch_execute(&format!(
            "UPDATE revenue.daily_mrr SET mrr = {mrr}, arr = {mrr} * 12, \
                 mrr_units = {mrr} * 3326400000 \
             WHERE currency = 'USD' AND day = '2026-01-20'"
        ))
        .await
        .expect("update");
    admin
        .execute(
            "UPDATE revenue.projector_checkpoint SET global_position = $1",
            &[&position],
        )
        .await
        .expect("checkpoint");
}

async fn announce(query: &Query, position: u64) {
    query
        .ledger
        .nats
        .publish(
            query.ledger.bus.projection_subject("revenue"),
            position.to_string().into(),
        )
        .await
        .expect("publish");
    query.ledger.nats.flush().await.expect("flush");
}

#[actix_web::test]
async fn an_announced_position_invalidates_cached_answers() {
    let query = Query::start(Setup::default()).await;
    let app = app!(query);
    let path = "/v1/metrics/summary?currency=USD";
    let first = get!(app, path);
    assert_eq!((first.cache(), first.position()), ("miss", 42));
    // The same query written differently is the same cache entry.
    let second = get!(app, "/v1/metrics/summary?min_position=1&currency=USD");
    assert_eq!((second.cache(), second.position()), ("hit", 42));

    commit_revenue(&query, 43, 17_000).await;
    let stale = get!(app, path);
    assert_eq!(
        (stale.cache(), &stale.json["mrr_minor"]),
        ("hit", &json!(16_000)),
        "without an announcement the cached answer stands (until its TTL)"
    );
    announce(&query, 43).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while query.service.position(ledger_query::Projection::Revenue) < 43 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "announcement not seen"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let fresh = get!(app, path);
    assert_eq!(
        (fresh.cache(), fresh.position(), &fresh.json["mrr_minor"]),
        ("miss", 43, &json!(17_000))
    );
}

#[actix_web::test]
async fn a_new_event_invalidates_the_customer_answer() {
    let query = Query::start(Setup {
        customers: true,
        revenue: false,
        ..Setup::default()
    })
    .await;
    let history = query.ledger.send_known_history(false).await;
    query.customers_caught_up().await;
    let app = app!(query);
    let path = format!("/v1/customers/{}?min_position=8", history.carol);
    let first = get!(app, &path);
    assert_eq!(
        (first.cache(), first.json["status"].as_str()),
        ("miss", Some("none"))
    );
    assert_eq!(get!(app, &path).cache(), "hit");

    let accepted = query
        .ledger
        .client()
        .send(&ledger_testkit::commands::start_subscription(
            "carol-2",
            &history.carol,
            "sub_c",
            "EUR",
        ))
        .await
        .expect("accepted");
    let position = accepted.events.last().expect("an event").global_position;
    assert_eq!(position, 9);
    // Read-your-writes: wait for the projector's announcement of position 9.
    let after = get!(
        app,
        &format!("/v1/customers/{}?min_position={position}", history.carol)
    );
    assert_eq!(after.status, StatusCode::OK, "{}", after.json);
    assert_eq!(
        (
            after.cache(),
            after.position(),
            after.json["status"].as_str(),
            &after.json["mrr_minor"]
        ),
        ("miss", 9, Some("active"), &json!(4_900))
    );
}

#[actix_web::test]
async fn min_position_times_out_with_a_clear_503() {
    let query = Query::start(Setup {
        min_position_wait: Duration::from_millis(300),
        ..Setup::default()
    })
    .await;
    let app = app!(query);
    let started = tokio::time::Instant::now();
    let late = get!(app, "/v1/metrics/summary?currency=USD&min_position=44");
    let waited = started.elapsed();
    assert_eq!(
        late.error(),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "position_not_reached".into(),
            None
        )
    );
    assert_eq!(
        late.json["error"]["details"],
        json!({"projection": "revenue", "min_position": 44, "position": 42, "waited_ms": 300})
    );
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // Already reached: answered at once.
    let reached = get!(app, "/v1/metrics/summary?currency=USD&min_position=42");
    assert_eq!(reached.status, StatusCode::OK);
}

#[actix_web::test]
async fn min_position_waits_for_the_announcement() {
    let query = Query::start(Setup::default()).await;
    let app = app!(query);
    let commit = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        commit_revenue(&query, 44, 18_000).await;
        announce(&query, 44).await;
    };
    let (waited, ()) = tokio::join!(
        async { get!(app, "/v1/metrics/summary?currency=USD&min_position=44") },
        commit
    );
    assert_eq!(waited.status, StatusCode::OK, "{}", waited.json);
    assert_eq!(
        (waited.position(), &waited.json["mrr_minor"]),
        (44, &json!(18_000))
    );
}

#[actix_web::test]
async fn several_instances_stay_coherent_without_a_shared_cache() {
    let query = Query::start(Setup::default()).await;
    let second = query.another_instance().await;
    let first_app = app!(query);
    let second_app =
        actix_web::test::init_service(actix_web::App::new().configure(second.app_config())).await;
    let path = "/v1/metrics/summary?currency=USD";
    for app in [&first_app, &second_app] {
        assert_eq!(get!(app, path).cache(), "miss");
        assert_eq!(get!(app, path).cache(), "hit");
    }
    commit_revenue(&query, 45, 19_000).await;
    announce(&query, 45).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while query.service.position(ledger_query::Projection::Revenue) < 45
        || second.position(ledger_query::Projection::Revenue) < 45
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "announcement not seen by both"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for app in [&first_app, &second_app] {
        let fresh = get!(app, path);
        assert_eq!(
            (fresh.cache(), fresh.position(), &fresh.json["mrr_minor"]),
            ("miss", 45, &json!(19_000))
        );
    }
}
