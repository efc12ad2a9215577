//! Against localstripe: a cancellation carried out and confirmed once, the provider's own
//! webhook for it appending nothing more, and a refusal that ends as a notification.

use std::time::Duration;

use ledger_devenv::receivers::HttpReceiver;
use ledger_domain::proto::{self, command::Kind, integration_registered::Target};
use ledger_domain::{Event, Issuer};
use ledger_projector::ProjectorConfig;
use ledger_testkit::ledger::{TestLedger, eventually, secret_keys};
use ledger_testkit::localstripe::LocalStripe;
use projector_notify::{DeliveryConfig, EgressPolicy, NotificationKind, Rules};
use provider_sync::{ApiSecret, ProviderApis, StripeApi};

use crate::{
    RunningSync, WAIT_MS, attempts, customer_with_subscription, events_of_type, fast_config,
    only_call, request_cancellation, wait_for_event,
};

fn stripe_apis(stripe: &LocalStripe) -> ProviderApis {
    ProviderApis::new(
        Some(StripeApi {
            api_base: stripe.url.clone(),
            api_key: ApiSecret::new("sk_test_ledger".to_owned()),
        }),
        None,
        None,
        Duration::from_secs(5),
        2,
    )
    .expect("a configuration")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_cancellation_is_carried_out_at_stripe_and_confirmed_once() {
    let stripe = LocalStripe::start().await;
    let hooks = HttpReceiver::start().await;
    stripe
        .register_webhook("ledger", &format!("{}/stripe", hooks.url), "whsec_test")
        .await;
    let account = stripe.create_customer("ada@example.com", "Ada").await;
    stripe.create_plan("pro", 4_900, "usd", "month").await;
    stripe.use_card(&account, "4242424242424242").await;
    let subscription = stripe.create_subscription(&account, "pro", 1, None).await;
    let subscription_id = subscription["id"].as_str().expect("an id").to_owned();

    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    let customer_id = customer_with_subscription(
        &ledger,
        proto::PaymentProvider::Stripe,
        &account,
        &subscription_id,
        "pro",
    )
    .await;
    let sync = RunningSync::start(&ledger, stripe_apis(&stripe), fast_config());
    request_cancellation(&ledger, &customer_id, &subscription_id, false).await;

    let (confirmed, event) = wait_for_event(&ledger, "subscription_cancelled").await;
    let Event::SubscriptionCancelled(cancelled) = event else {
        panic!("{event:?}")
    };
    assert_eq!(cancelled.subscription_id, subscription_id);
    assert_eq!(cancelled.reason, "customer asked");
    assert_eq!(confirmed.event.issuer, Issuer::PaymentProvider);
    assert_eq!(
        confirmed.event.payment_provider_type,
        ledger_domain::Provider::Stripe
    );
    assert!(
        confirmed.idempotency_key.starts_with("provider-sync:"),
        "{}",
        confirmed.idempotency_key
    );
    let request = &events_of_type(&ledger, "cancellation_requested").await[0].0;
    assert_eq!(confirmed.event.causation_id, Some(request.event.event_id));
    let at_stripe = stripe
        .get(&format!("/v1/subscriptions/{subscription_id}"))
        .await;
    assert_eq!(at_stripe["status"], "canceled");
    assert_eq!(
        attempts(&ledger).await,
        vec![(
            format!("DELETE /v1/subscriptions/{subscription_id}"),
            "succeeded".to_owned(),
            Some(200)
        )]
    );
    assert_eq!(only_call(&ledger).await.0, "done");

    // Stripe's own webhook for the same change finds the subscription cancelled in the
    // ledger: recorded, nothing appended.
    let delivered = eventually(WAIT_MS, || async {
        hooks
            .requests()
            .iter()
            .any(|request| request.json()["type"] == "customer.subscription.deleted")
    })
    .await;
    assert!(delivered, "localstripe sent customer.subscription.deleted");
    let webhook = hooks
        .requests()
        .into_iter()
        .find(|request| request.json()["type"] == "customer.subscription.deleted")
        .expect("the deletion");
    let last = ledger.last_position().await;
    let recorded = ledger
        .client()
        .deliver(&proto::ProviderDelivery {
            provider: proto::PaymentProvider::Stripe as i32,
            body: webhook.body.clone().into(),
            received_at_unix_micros: i64::try_from(
                time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000,
            )
            .expect("a time"),
            ..proto::ProviderDelivery::default()
        })
        .await
        .expect("recorded");
    assert!(recorded.global_positions.is_empty(), "{recorded:?}");
    assert_ne!(recorded.outcome(), proto::DeliveryOutcome::Appended);
    assert_eq!(ledger.last_position().await, last);
    assert_eq!(
        events_of_type(&ledger, "subscription_cancelled")
            .await
            .len(),
        1
    );

    sync.stop().await;
    writer.stop().await.expect("writer stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_stripe_refuses_fails_with_its_code_and_is_notified() {
    let stripe = LocalStripe::start().await;
    let receiver = HttpReceiver::start().await;
    let ledger = TestLedger::new().await;
    let writer = ledger.start_writer();
    // The notify projector and its worker, with a webhook integration for every kind.
    let (stop_notify, notify_stopped) = tokio::sync::oneshot::channel::<()>();
    let notify = {
        let (store, url, nats) = (
            ledger.store.clone(),
            ledger.database().url().to_owned(),
            ledger.nats.clone(),
        );
        let config = ProjectorConfig {
            bus: ledger.bus.clone(),
            ..ProjectorConfig::default()
        };
        tokio::spawn(async move {
            projector_notify::run(
                store,
                &url,
                nats,
                &config,
                DeliveryConfig {
                    poll_interval: Duration::from_millis(20),
                    egress: EgressPolicy {
                        allow_http: true,
                        allowlist: vec!["127.0.0.1".parse().expect("an allowlist entry")],
                        ..EgressPolicy::default()
                    },
                    secrets: Some(secret_keys()),
                    ..DeliveryConfig::default()
                },
                Rules::default(),
                false,
                async move {
                    let _ = notify_stopped.await;
                },
                |_| {},
            )
            .await
        })
    };
    let mut metadata = ledger_testkit::commands::metadata("integration", "");
    metadata.payment_provider = proto::PaymentProvider::Internal as i32;
    ledger
        .client()
        .send(&proto::Command {
            metadata: Some(metadata),
            kind: Some(Kind::RegisterIntegration(proto::IntegrationRegistered {
                name: "operators".to_owned(),
                target: Some(Target::Webhook(proto::WebhookTarget {
                    url: format!("{}/hooks/ledger", receiver.url),
                    signing_secret: "whsec_test_0123456789abcdef".to_owned(),
                })),
                kinds: vec![NotificationKind::CancellationFailed.to_proto() as i32],
                filter: None,
            })),
        })
        .await
        .expect("integration registered");

    // The ledger holds a Stripe subscription localstripe has never seen.
    let customer_id = customer_with_subscription(
        &ledger,
        proto::PaymentProvider::Stripe,
        "cus_unknown",
        "sub_unknown",
        "pro",
    )
    .await;
    let sync = RunningSync::start(&ledger, stripe_apis(&stripe), fast_config());
    request_cancellation(&ledger, &customer_id, "sub_unknown", false).await;

    let (failed, event) = wait_for_event(&ledger, "cancellation_failed").await;
    let Event::CancellationFailed(failure) = event else {
        panic!("{event:?}")
    };
    assert_eq!(failed.event.issuer, Issuer::PaymentProvider);
    assert!(!failure.failure_code.is_empty());
    assert!(
        failure.failure_message.contains("Not Found")
            || failure.failure_message.contains("No such"),
        "{failure:?}"
    );
    // Refused once: a 4xx is not retried.
    let logged = attempts(&ledger).await;
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].1, "refused");
    assert_eq!(logged[0].2, Some(404));
    assert!(
        events_of_type(&ledger, "subscription_cancelled")
            .await
            .is_empty()
    );

    let notified = eventually(WAIT_MS, || async {
        receiver.requests().iter().any(|request| {
            request.path == "/hooks/ledger"
                && request.json()["data"]["kind"] == "cancellation_failed"
        })
    })
    .await;
    assert!(
        notified,
        "the receiver got the cancellation_failed notification"
    );
    let notification = receiver
        .requests()
        .into_iter()
        .find(|request| request.json()["data"]["kind"] == "cancellation_failed")
        .expect("the notification")
        .json();
    assert_eq!(notification["data"]["subscription_id"], "sub_unknown");

    sync.stop().await;
    let _ = stop_notify.send(());
    notify
        .await
        .expect("notify task")
        .expect("notify stops cleanly");
    writer.stop().await.expect("writer stops");
}
