//! A provider's event in the timeline names its webhook delivery (`causation_id`), which
//! `/v1/provider-messages/{id}` serves as received, to `connectors:read` tokens only.

use actix_web::http::StatusCode;
use ledger_domain::proto;

use crate::{Query, Setup, TOKEN_CUSTOMERS, app, get};

#[actix_web::test]
async fn a_provider_event_links_to_the_raw_message_behind_it() {
    let query = Query::start(Setup {
        customers: true,
        revenue: false,
        ..Setup::default()
    })
    .await;
    let body = br#"{"id": "evt_q1", "object": "event", "type": "customer.created", "created": 1764000000, "data": {"object": {"id": "cus_q", "object": "customer", "email": "q@example.com", "name": "Q"}}}"#;
    let recorded = query
        .ledger
        .client()
        .deliver(&proto::ProviderDelivery {
            provider: proto::PaymentProvider::Stripe as i32,
            body: body.to_vec().into(),
            received_at_unix_micros: 1_764_000_000_000_000,
            ..proto::ProviderDelivery::default()
        })
        .await
        .expect("recorded");
    query.customers_caught_up().await;
    let app = app!(query);

    let timeline = get!(
        app,
        &format!(
            "/v1/customers/{}/timeline?min_position=1",
            recorded.customer_id
        )
    );
    assert_eq!(timeline.status, StatusCode::OK, "{}", timeline.json);
    let event = &timeline.json["items"][0];
    assert_eq!(event["provider"], "stripe");
    assert_eq!(event["issuer"], "payment_provider");
    assert_eq!(event["causation_id"], recorded.inbox_id.as_str());

    let path = format!("/v1/provider-messages/{}", recorded.inbox_id);
    let message = get!(app, &path);
    assert_eq!(message.status, StatusCode::OK, "{}", message.json);
    assert_eq!(message.json["provider_event_id"], "evt_q1");
    assert_eq!(message.json["outcome"], "appended");
    assert_eq!(message.json["global_positions"], serde_json::json!([1]));
    assert_eq!(
        message.json["body"].as_str().map(str::as_bytes),
        Some(&body[..]),
        "the body as received"
    );

    let (status, code, _) = get!(app, &path, Some(TOKEN_CUSTOMERS)).error();
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let (status, _, _) = get!(app, &path, None).error();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, code, parameter) = get!(app, "/v1/provider-messages/nope").error();
    assert_eq!(
        (status, code.as_str(), parameter.as_deref()),
        (StatusCode::BAD_REQUEST, "bad_parameter", Some("id"))
    );
    let missing = format!("/v1/provider-messages/{}", uuid::Uuid::nil());
    let (status, _, _) = get!(app, &missing).error();
    assert_eq!(status, StatusCode::NOT_FOUND);
}
