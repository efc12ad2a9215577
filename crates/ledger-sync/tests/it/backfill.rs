//! `import_paypal` and `import_xendit` against PayPal and Xendit played by a local HTTP server:
//! pages of objects, a 429 with `Retry-After` and a 500 on a page; the events imported, with
//! the providers' own times; an interrupted run resuming from its cursor; a second run
//! appending nothing; and a webhook for an object already imported appending nothing.

use std::time::Duration;

use ledger_devenv::receivers::{HttpReceiver, ScriptedAnswer};
use ledger_domain::proto;
use ledger_sync::{
    ApiSecret, ImportOptions, ImportReport, ListReport, PaypalApi, PaypalReader, XenditApi,
    XenditReader,
};
use ledger_testkit::ledger::TestLedger;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn answer(body: &Value) -> ScriptedAnswer {
    ScriptedAnswer::json(200, body.clone())
}

fn failure(status: u16, retry_after: Option<&str>) -> ScriptedAnswer {
    ScriptedAnswer {
        status,
        headers: retry_after
            .map(|seconds| vec![("Retry-After".to_owned(), seconds.to_owned())])
            .unwrap_or_default(),
        body: "{\"message\":\"try again\"}".to_owned(),
        ..ScriptedAnswer::default()
    }
}

/// The event types in the ledger, in order.
async fn event_types(ledger: &TestLedger) -> Vec<String> {
    ledger
        .table_events()
        .await
        .into_iter()
        .map(|recorded| recorded.event.event_type)
        .collect()
}

fn count(types: &[String], event_type: &str) -> usize {
    types.iter().filter(|found| *found == event_type).count()
}

/// The business time of the events of `event_type`, Unix seconds, sorted.
async fn times_of(ledger: &TestLedger, event_type: &str) -> Vec<i64> {
    let mut times: Vec<i64> = ledger
        .table_events()
        .await
        .into_iter()
        .filter(|recorded| recorded.event.event_type == event_type)
        .map(|recorded| recorded.event.occurred_at.unix_timestamp())
        .collect();
    times.sort_unstable();
    times
}

fn unix(text: &str) -> i64 {
    OffsetDateTime::parse(text, &Rfc3339)
        .expect("a time")
        .unix_timestamp()
}

/// A delivery as ingest sends the writer a verified webhook.
async fn webhook(ledger: &TestLedger, provider: proto::PaymentProvider, body: &Value) -> i32 {
    let delivery = proto::ProviderDelivery {
        provider: provider as i32,
        body: serde_json::to_vec(body).expect("JSON").into(),
        received_at_unix_micros: OffsetDateTime::now_utc().unix_timestamp() * 1_000_000,
        correlation_id: uuid::Uuid::now_v7().to_string(),
        renormalizes_inbox_id: String::new(),
        source: proto::DeliverySource::Webhook as i32,
    };
    ledger
        .client()
        .deliver(&delivery)
        .await
        .expect("the writer records the webhook")
        .outcome
}

fn totals(report: &ImportReport) -> ListReport {
    report.total()
}

fn invoice(id: &str, status: &str, email: &str, day: u32) -> Value {
    let mut invoice = json!({
        "id": id, "external_id": format!("order-{id}"), "user_id": "5848fdf860053555135587e7",
        "status": status, "merchant_name": "Ledger Test", "amount": 150_000,
        "payer_email": email, "currency": "IDR",
        "created": format!("2026-01-{day:02}T08:00:00.000Z"),
        "updated": format!("2026-01-{day:02}T09:30:00.000Z"),
    });
    if status == "PAID" || status == "SETTLED" {
        invoice["paid_amount"] = json!(150_000);
        invoice["paid_at"] = json!(format!("2026-01-{day:02}T09:30:00.000Z"));
    }
    invoice
}

const INVOICES: &str = "/v2/invoices?limit=100";

/// A Xendit reader of `server`, as `ledger sync xendit` builds it.
/// Serves `first` as the invoices list's first page and `next` as the page after `last_id`.
fn serve_two_pages(server: &HttpReceiver, first: &Value, last_id: &str, next: &Value) {
    server.answer_path(INVOICES, answer(first));
    server.answer_path(
        &format!("{INVOICES}&last_invoice_id={last_id}"),
        answer(next),
    );
}

fn xendit_reader(server: &HttpReceiver) -> XenditReader {
    XenditReader::new(
        XenditApi {
            api_base: server.url.clone(),
            api_key: ApiSecret::new("xnd_development_backfill".to_owned()),
        },
        Duration::from_secs(5),
    )
    .expect("a reader")
}

/// `ledger sync xendit [--since] [--pages]` of `reader` into `ledger`.
async fn import_xendit(
    reader: &XenditReader,
    ledger: &TestLedger,
    since: Option<OffsetDateTime>,
    pages_max: Option<u64>,
) -> ImportReport {
    let options = ImportOptions {
        since,
        pages_max,
        ..ImportOptions::default()
    };
    ledger_sync::import_xendit(
        reader,
        &ledger.store,
        &ledger.client(),
        &options,
        &mut |_| {},
    )
    .await
    .expect("the backfill")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xendit_invoices_are_imported_once_resumed_from_the_cursor_and_a_callback_adds_nothing() {
    let server = HttpReceiver::start().await;
    let pages = [
        vec![
            invoice("inv_5", "PAID", "ana@example.com", 15),
            invoice("inv_4", "PENDING", "ana@example.com", 14),
        ],
        vec![
            invoice("inv_3", "EXPIRED", "budi@example.com", 13),
            invoice("inv_2", "SETTLED", "budi@example.com", 12),
        ],
        vec![invoice("inv_1", "PAID", "ana@example.com", 11)],
    ];
    server.answer_path(INVOICES, answer(&json!(pages[0])));
    let after = |id: &str| format!("{INVOICES}&last_invoice_id={id}");
    server.answer_path(&after("inv_4"), answer(&json!(pages[1])));
    server.answer_path(&after("inv_2"), answer(&json!(pages[2])));
    server.answer_path(&after("inv_1"), answer(&json!([])));
    server.answer_path_next_with(&after("inv_4"), [failure(429, Some("1"))]);
    server.answer_path_next_with(&after("inv_2"), [failure(500, None)]);
    let reader = xendit_reader(&server);
    let ledger = TestLedger::new().await;
    let _writer = ledger.start_writer();
    let import = |pages_max| import_xendit(&reader, &ledger, None, pages_max);

    // Interrupted after the first page: its cursor is inv_4.
    let first = import(Some(1)).await;
    assert!(!first.complete);
    assert_eq!((totals(&first).objects, totals(&first).appended), (2, 1));
    let resumed = import(None).await;
    assert!(resumed.complete);
    let requested: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        requested,
        vec![
            INVOICES.to_owned(),
            after("inv_4"),
            after("inv_4"),
            after("inv_2"),
            after("inv_2"),
            after("inv_1"),
        ],
        "resumed after inv_4; the 429 and the 500 were retried"
    );
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 429, 200, 500, 200, 200]);
    let retried = server.requests();
    assert!(
        retried[2].received_at - retried[1].received_at >= Duration::from_secs(1),
        "the retry waited for Retry-After"
    );
    for request in &retried {
        // The key as the Basic user, no password.
        assert_eq!(
            request.header("authorization"),
            Some("Basic eG5kX2RldmVsb3BtZW50X2JhY2tmaWxsOg==")
        );
    }
    let counts = totals(&resumed);
    assert_eq!(
        (counts.objects, counts.appended, counts.unreadable),
        (3, 3, 0),
        "{resumed:?}"
    );

    let types = event_types(&ledger).await;
    assert_eq!(count(&types, "invoice_issued"), 4, "{types:?}");
    assert_eq!(count(&types, "payment_succeeded"), 3, "{types:?}");
    assert_eq!(count(&types, "payment_failed"), 1, "{types:?}");
    assert_eq!(
        times_of(&ledger, "payment_succeeded").await,
        vec![
            unix("2026-01-11T09:30:00Z"),
            unix("2026-01-12T09:30:00Z"),
            unix("2026-01-15T09:30:00Z"),
        ],
        "business time is the invoice's paid_at"
    );
    let held = types.len();

    // A second run reads every page again and sends nothing.
    let again = import(None).await;
    assert!(again.complete);
    let counts = totals(&again);
    assert_eq!((counts.objects, counts.skipped, counts.appended), (5, 5, 0));
    assert_eq!(event_types(&ledger).await.len(), held);

    // Xendit's callback for an invoice already imported: the same event id, a duplicate.
    let outcome = webhook(
        &ledger,
        proto::PaymentProvider::Xendit,
        &invoice("inv_5", "PAID", "ana@example.com", 15),
    )
    .await;
    assert_eq!(outcome, proto::DeliveryOutcome::Duplicate as i32);
    assert_eq!(event_types(&ledger).await.len(), held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_saved_under_another_since_starts_the_list_over() {
    let server = HttpReceiver::start().await;
    let recent = [
        invoice("inv_5", "PAID", "ana@example.com", 15),
        invoice("inv_4", "PAID", "ana@example.com", 14),
    ];
    let since = OffsetDateTime::parse("2026-01-13T00:00:00Z", &Rfc3339).expect("a time");
    let from_since = format!("{INVOICES}&created_after=2026-01-13T00%3A00%3A00Z");
    let after = |id: &str| format!("{INVOICES}&last_invoice_id={id}");
    server.answer_path(&from_since, answer(&json!(recent)));
    server.answer_path(INVOICES, answer(&json!(recent)));
    server.answer_path(
        &after("inv_4"),
        answer(&json!([invoice("inv_1", "PAID", "ana@example.com", 11)])),
    );
    server.answer_path(&after("inv_1"), answer(&json!([])));
    let reader = xendit_reader(&server);
    let ledger = TestLedger::new().await;
    let _writer = ledger.start_writer();

    // `--since 2026-01-13 --pages 1`: its cursor is inv_4, under that since.
    let first = import_xendit(&reader, &ledger, Some(since), Some(1)).await;
    assert!(!first.complete);
    assert_eq!(
        ledger
            .store
            .sync_cursor(ledger_domain::Provider::Xendit, "invoice")
            .await
            .expect("the cursor"),
        Some(ledger_store::SyncCursor {
            cursor: "inv_4".to_owned(),
            since: Some(since)
        })
    );
    // Without --since: inv_4 of the filtered list is not where the whole list stands.
    let whole = import_xendit(&reader, &ledger, None, None).await;
    assert!(whole.complete);
    let requested: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        requested,
        vec![
            from_since,
            INVOICES.to_owned(),
            after("inv_4"),
            after("inv_1")
        ],
        "the run without --since started the list over"
    );
    let counts = totals(&whole);
    assert_eq!((counts.objects, counts.skipped, counts.appended), (3, 2, 1));
    assert_eq!(
        ledger
            .store
            .sync_cursor(ledger_domain::Provider::Xendit, "invoice")
            .await
            .expect("the cursor"),
        None,
        "read to its end"
    );
}

fn paypal_reader(server: &HttpReceiver) -> PaypalReader {
    PaypalReader::new(
        PaypalApi {
            api_base: server.url.clone(),
            client_id: "client-id".to_owned(),
            client_secret: ApiSecret::new("client-secret".to_owned()),
        },
        Duration::from_secs(5),
    )
    .expect("a reader")
}

fn subscription(id: &str, payer: &str, email: &str) -> Value {
    json!({
        "id": id, "plan_id": "P-BASIC", "status": "ACTIVE", "quantity": "1",
        "start_time": "2025-10-01T10:00:00Z", "create_time": "2025-10-01T09:59:00Z",
        "update_time": "2025-10-01T10:00:05Z", "status_update_time": "2025-10-01T10:00:05Z",
        "subscriber": {"payer_id": payer, "email_address": email,
                       "name": {"given_name": "Pay", "surname": payer}},
        "billing_info": {"next_billing_time": "2099-01-01T10:00:00Z", "failed_payments_count": 0},
        "plan": {"id": "P-BASIC", "billing_cycles": [{
            "tenure_type": "REGULAR", "sequence": 1, "total_cycles": 0,
            "frequency": {"interval_unit": "MONTH", "interval_count": 1},
            "pricing_scheme": {"fixed_price": {"value": "10.00", "currency_code": "USD"}}}]},
    })
}

fn transaction(id: &str, code: &str, reference: (&str, &str), value: &str, at: &str) -> Value {
    json!({"transaction_info": {
        "transaction_id": id, "transaction_event_code": code, "transaction_status": "S",
        "paypal_reference_id": reference.0, "paypal_reference_id_type": reference.1,
        "transaction_initiation_date": at, "transaction_updated_date": at,
        "transaction_amount": {"currency_code": "USD", "value": value},
    }})
}

fn search_page(transactions: &[Value], page: u64, total_pages: u64) -> ScriptedAnswer {
    answer(&json!({
        "transaction_details": transactions, "account_number": "ACCOUNT1",
        "page": page, "total_items": 4, "total_pages": total_pages,
    }))
}

/// The Transaction Search requests so far: `(start_date, page)`.
fn searches(server: &HttpReceiver) -> Vec<(String, String)> {
    server
        .requests()
        .into_iter()
        .filter(|request| request.path.starts_with("/v1/reporting/transactions?"))
        .map(|request| {
            let query = reqwest::Url::parse(&format!("http://x{}", request.path)).expect("a URL");
            let field = |name: &str| {
                query
                    .query_pairs()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.into_owned())
                    .unwrap_or_default()
            };
            (field("start_date"), field("page"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paypal_subscriptions_sales_and_refunds_are_imported_once_and_resumed_from_the_cursor() {
    let server = HttpReceiver::start().await;
    server.answer_path(
        "/v1/oauth2/token",
        ScriptedAnswer::json(
            200,
            json!({"access_token": "A21AAbackfill", "expires_in": 32_400}),
        ),
    );
    server.answer_path(
        "/v1/billing/subscriptions/I-ONE?fields=plan",
        answer(&subscription("I-ONE", "PAYERONE", "one@example.com")),
    );
    server.answer_path(
        "/v1/billing/subscriptions/I-TWO?fields=plan",
        answer(&subscription("I-TWO", "PAYERTWO", "two@example.com")),
    );
    // Two windows of 31 days at most: the first of two pages, the second of one.
    let window_one = [
        search_page(
            &[
                transaction(
                    "S1",
                    "T0002",
                    ("I-ONE", "SUB"),
                    "10.00",
                    "2025-11-01T10:00:00+0000",
                ),
                transaction(
                    "S2",
                    "T0002",
                    ("I-TWO", "SUB"),
                    "10.00",
                    "2025-11-02T10:00:00+0000",
                ),
            ],
            1,
            2,
        ),
        search_page(
            &[
                transaction(
                    "R1",
                    "T1107",
                    ("S1", "TXN"),
                    "-4.00",
                    "2025-11-03T10:00:00+0000",
                ),
                // A fee: not imported.
                transaction("F1", "T0400", ("", ""), "-1.00", "2025-11-03T11:00:00+0000"),
            ],
            2,
            2,
        ),
    ];
    let window_two = [search_page(
        &[transaction(
            "S3",
            "T0002",
            ("I-ONE", "SUB"),
            "10.00",
            "2025-12-01T10:00:00+0000",
        )],
        1,
        1,
    )];
    let reader = paypal_reader(&server);
    let ledger = TestLedger::new().await;
    let _writer = ledger.start_writer();
    let client = ledger.client();
    let since = OffsetDateTime::now_utc() - time::Duration::days(40);
    let import = |pages_max| {
        // One page at a time: a refund is recorded after the page of the sale it returns.
        let options = ImportOptions {
            since: Some(since),
            pages_max,
            pages_in_flight: 1,
            // The webhook event notifications have their own test.
            events: false,
        };
        let (reader, ledger, client) = (&reader, &ledger, &client);
        async move {
            ledger_sync::import_paypal(reader, &ledger.store, client, &options, &mut |_| {})
                .await
                .expect("the backfill")
        }
    };

    // Interrupted after two pages of the subscriptions list (a 429 before the second); a 401
    // first (the token expired early) is tried again with a new token.
    server.answer_next_with([
        failure(401, None),
        window_one[0].clone(),
        failure(429, Some("1")),
        window_one[1].clone(),
    ]);
    let first = import(Some(2)).await;
    assert!(!first.complete);
    assert_eq!(totals(&first).appended, 2, "{first:?}");
    let first_searches = searches(&server);
    let window_two_start = {
        let start = since.replace_nanosecond(0).expect("whole seconds") + time::Duration::days(31);
        start.format(&Rfc3339).expect("a time")
    };
    // Resumed at the second window (a 500 on its page), then the transactions from the start.
    server.answer_next_with([
        failure(500, None),
        window_two[0].clone(),
        window_one[0].clone(),
        window_one[1].clone(),
        window_two[0].clone(),
    ]);
    let resumed = import(None).await;
    assert!(resumed.complete, "{resumed:?}");
    let resumed_searches: Vec<(String, String)> =
        searches(&server)[first_searches.len()..].to_vec();
    assert_eq!(
        resumed_searches.first(),
        Some(&(window_two_start.clone(), "1".to_owned())),
        "the subscriptions list resumed at the second window"
    );
    assert_eq!(resumed_searches.len(), 5, "{resumed_searches:?}");
    let statuses: Vec<u16> = server
        .requests()
        .iter()
        .filter(|request| request.path.starts_with("/v1/reporting/"))
        .map(|request| request.status)
        .collect();
    assert_eq!(statuses, vec![401, 200, 429, 200, 500, 200, 200, 200, 200]);
    let tokens = server
        .requests()
        .iter()
        .filter(|request| request.path == "/v1/oauth2/token")
        .count();
    assert_eq!(tokens, 2, "one token, cached, and a new one after the 401");
    for request in server.requests() {
        if request.path.starts_with("/v1/reporting/") {
            assert_eq!(
                request.header("authorization"),
                Some("Bearer A21AAbackfill")
            );
        }
    }

    let types = event_types(&ledger).await;
    assert_eq!(count(&types, "subscription_started"), 2, "{types:?}");
    assert_eq!(count(&types, "payment_succeeded"), 3, "{types:?}");
    assert_eq!(count(&types, "payment_refunded"), 1, "{types:?}");
    assert_eq!(
        times_of(&ledger, "payment_succeeded").await,
        vec![
            unix("2025-11-01T10:00:00Z"),
            unix("2025-11-02T10:00:00Z"),
            unix("2025-12-01T10:00:00Z"),
        ],
        "business time is the transaction's"
    );
    assert_eq!(
        times_of(&ledger, "payment_refunded").await,
        vec![unix("2025-11-03T10:00:00Z")]
    );
    let held = types.len();

    // A second run reads everything again and appends nothing.
    server.answer_next_with([
        window_one[0].clone(),
        window_one[1].clone(),
        window_two[0].clone(),
        window_one[0].clone(),
        window_one[1].clone(),
        window_two[0].clone(),
    ]);
    let again = import(None).await;
    assert!(again.complete);
    let counts = totals(&again);
    assert_eq!((counts.appended, counts.skipped), (0, 6), "{again:?}");
    assert_eq!(event_types(&ledger).await.len(), held);

    // PayPal's webhook for a sale already imported: a new event id, found already applied.
    let outcome = webhook(
        &ledger,
        proto::PaymentProvider::Paypal,
        &json!({
            "id": "WH-1", "event_type": "PAYMENT.SALE.COMPLETED",
            "create_time": "2025-11-01T10:00:05Z", "resource_type": "sale",
            "resource": {"id": "S1", "state": "completed", "billing_agreement_id": "I-ONE",
                         "amount": {"total": "10.00", "currency": "USD"}},
        }),
    )
    .await;
    assert_eq!(outcome, proto::DeliveryOutcome::Ignored as i32);
    assert_eq!(event_types(&ledger).await.len(), held);
}

/// A provider that ignores the paging parameter (every page is the first) stops the import
/// with an error after the first page is recorded, instead of asking for it for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_whose_paging_does_not_advance_stops_the_import() {
    let server = HttpReceiver::start().await;
    let first = json!([
        invoice("inv_5", "PAID", "ana@example.com", 15),
        invoice("inv_4", "PAID", "ana@example.com", 14),
    ]);
    serve_two_pages(&server, &first, "inv_4", &first);
    let reader = xendit_reader(&server);
    let ledger = TestLedger::new().await;
    let _writer = ledger.start_writer();
    let error = ledger_sync::import_xendit(
        &reader,
        &ledger.store,
        &ledger.client(),
        &ImportOptions::default(),
        &mut |_| {},
    )
    .await
    .expect_err("the import stops");
    assert!(error.to_string().contains("does not advance"), "{error}");
    assert_eq!(
        server.requests().len(),
        2,
        "the first page and its repeat, no more"
    );
    let recorded: i64 = ledger
        .database()
        .client()
        .await
        .query_one("SELECT count(*) FROM provider_inbox", &[])
        .await
        .expect("the inbox")
        .get(0);
    assert_eq!(recorded, 2, "the first page's two invoices, recorded once");
}

/// A provider whose pages link round in a cycle (the page after `inv_3` names `inv_4` again,
/// whose page named `inv_3`) stops the import with an error once the cycle closes, instead of
/// reading its pages for ever: only the page right before was compared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_whose_paging_goes_round_stops_the_import() {
    let server = HttpReceiver::start().await;
    let first = json!([
        invoice("inv_5", "PAID", "ana@example.com", 15),
        invoice("inv_4", "PAID", "ana@example.com", 14),
    ]);
    serve_two_pages(
        &server,
        &first,
        "inv_4",
        &json!([invoice("inv_3", "PAID", "ana@example.com", 13)]),
    );
    server.answer_path(&format!("{INVOICES}&last_invoice_id=inv_3"), answer(&first));
    let reader = xendit_reader(&server);
    let ledger = TestLedger::new().await;
    let _writer = ledger.start_writer();
    let error = tokio::time::timeout(
        Duration::from_secs(30),
        ledger_sync::import_xendit(
            &reader,
            &ledger.store,
            &ledger.client(),
            &ImportOptions::default(),
            &mut |_| {},
        ),
    )
    .await
    .expect("the import ends")
    .expect_err("the import stops");
    assert!(error.to_string().contains("does not advance"), "{error}");
    assert_eq!(server.requests().len(), 3, "each page once, no more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_listed_twice_on_a_page_is_recorded_once_and_its_copy_as_a_duplicate() {
    let server = HttpReceiver::start().await;
    let paid = invoice("inv_5", "PAID", "ana@example.com", 15);
    let pending = invoice("inv_4", "PENDING", "ana@example.com", 14);
    serve_two_pages(
        &server,
        &json!([paid, paid.clone(), pending, pending.clone()]),
        "inv_4",
        &json!([]),
    );
    let reader = xendit_reader(&server);
    let ledger = TestLedger::new().await;
    let _writer = ledger.start_writer();

    let first = totals(&import_xendit(&reader, &ledger, None, None).await);
    assert_eq!(
        (
            first.objects,
            first.appended,
            first.ignored,
            first.duplicate
        ),
        (4, 1, 1, 2)
    );
    // As a redelivered webhook: the first copy decided, the second a `duplicate` row.
    let mut rows: Vec<(String, String)> = ledger
        .store
        .inbox_rows(&ledger_store::InboxFilter {
            limit: 10,
            ..ledger_store::InboxFilter::default()
        })
        .await
        .expect("the inbox")
        .into_iter()
        .map(|row| (row.row.provider_event_id, row.row.outcome.to_string()))
        .collect();
    rows.sort();
    let row = |id: &str, outcome: &str| (id.to_owned(), outcome.to_owned());
    assert_eq!(
        rows,
        vec![
            row("inv_4:PENDING", "duplicate"),
            row("inv_4:PENDING", "ignored"),
            row("inv_5:PAID", "appended"),
            row("inv_5:PAID", "duplicate"),
        ]
    );
    let types = event_types(&ledger).await;
    assert_eq!(count(&types, "payment_succeeded"), 1, "{types:?}");

    // A second run skips every copy: the report still adds up to the objects listed.
    let again = totals(&import_xendit(&reader, &ledger, None, None).await);
    assert_eq!((again.objects, again.skipped, again.duplicate), (4, 4, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_holding_a_nul_character_is_unreadable_and_the_rest_is_imported() {
    let server = HttpReceiver::start().await;
    // PostgreSQL text cannot hold NUL: neither the inbox look-up of its id nor the cursor it
    // makes (the last id of the page) may fail the run.
    let paid = invoice("inv_7", "PAID", "ana@example.com", 17);
    let broken = invoice("inv_\u{0}6", "PAID", "bo@example.com", 16);
    serve_two_pages(&server, &json!([paid, broken]), "inv_%006", &json!([]));
    let reader = xendit_reader(&server);
    let ledger = TestLedger::new().await;
    let _writer = ledger.start_writer();

    let report = totals(&import_xendit(&reader, &ledger, None, None).await);
    assert_eq!(
        (report.objects, report.appended, report.unreadable),
        (2, 1, 1)
    );
    let types = event_types(&ledger).await;
    assert_eq!(count(&types, "payment_succeeded"), 1, "{types:?}");
    // Read to its end: no cursor left.
    assert_eq!(
        ledger
            .store
            .sync_cursor(ledger_domain::Provider::Xendit, "invoice")
            .await
            .expect("the cursor"),
        None
    );
}

/// A PayPal webhook event notification about `subscription`, as the events list answers it.
fn subscription_event(id: &str, event_type: &str, subscription: Value) -> Value {
    json!({
        "id": id, "event_version": "1.0", "create_time": "2025-10-01T10:00:06Z",
        "resource_type": "subscription", "resource_version": "2.0", "event_type": event_type,
        "summary": "Subscription activated", "resource": subscription,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paypal_webhook_events_bring_the_subscriptions_no_transaction_pays_once() {
    let server = HttpReceiver::start().await;
    server.answer_path(
        "/v1/oauth2/token",
        ScriptedAnswer::json(
            200,
            json!({"access_token": "A21AAevents", "expires_in": 32_400}),
        ),
    );
    // The second page, by the first page's next link.
    let next_query = "page_size=10&move_to=next&index_id=42";
    server.answer_path(
        &format!("/v1/notifications/webhooks-events?{next_query}"),
        answer(&json!({"events": [subscription_event(
            "WH-EV2",
            "BILLING.SUBSCRIPTION.ACTIVATED",
            subscription("I-EVTWO", "PAYEREVTWO", "evtwo@example.com"),
        )], "links": []})),
    );
    let first_page = answer(&json!({
        "events": [subscription_event(
            "WH-EV1",
            "BILLING.SUBSCRIPTION.ACTIVATED",
            subscription("I-EVONE", "PAYEREVONE", "evone@example.com"),
        )],
        "links": [{"rel": "next", "method": "GET",
                   "href": format!("{}/v1/notifications/webhooks-events?{next_query}", server.url)}],
    }));
    let no_transactions = search_page(&[], 1, 1);
    let reader = paypal_reader(&server);
    let ledger = TestLedger::new().await;
    let _writer = ledger.start_writer();
    let client = ledger.client();
    let since = OffsetDateTime::now_utc() - time::Duration::days(10);
    let options = ImportOptions {
        since: Some(since),
        pages_in_flight: 1,
        ..ImportOptions::default()
    };
    let import = || async {
        ledger_sync::import_paypal(&reader, &ledger.store, &client, &options, &mut |_| {}).await
    };

    // No transaction in the window: the subscriptions come from the events alone.
    server.answer_next_with([
        no_transactions.clone(),
        no_transactions.clone(),
        first_page.clone(),
    ]);
    let first = import().await.expect("the backfill");
    assert!(first.complete, "{first:?}");
    assert_eq!(totals(&first).appended, 2, "{first:?}");
    let types = event_types(&ledger).await;
    assert_eq!(count(&types, "subscription_started"), 2, "{types:?}");
    let lists: Vec<&str> = server
        .requests()
        .into_iter()
        .map(|request| request.path)
        .filter(|path| path.starts_with("/v1/notifications/"))
        .map(|path| {
            if path.contains("index_id") {
                "next"
            } else {
                "first"
            }
        })
        .collect();
    assert_eq!(lists, ["first", "next"]);
    let first_request = server
        .requests()
        .into_iter()
        .find(|request| {
            request
                .path
                .starts_with("/v1/notifications/webhooks-events?page_size")
        })
        .expect("the events list read");
    let query = reqwest::Url::parse(&format!("http://x{}", first_request.path)).expect("a URL");
    let field = |name: &str| {
        query
            .query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    assert_eq!(field("page_size").as_deref(), Some("10"));
    assert_eq!(
        field("start_time"),
        Some(
            since
                .replace_nanosecond(0)
                .expect("whole seconds")
                .format(&Rfc3339)
                .expect("a time")
        ),
        "from --since, later than 30 days ago"
    );
    assert_eq!(
        first_request.header("authorization"),
        Some("Bearer A21AAevents")
    );
    assert_eq!(
        ledger
            .store
            .sync_cursor(ledger_domain::Provider::Paypal, "event")
            .await
            .expect("the cursor"),
        None,
        "read to its end"
    );
    let held = types.len();

    // A second run skips both events; the webhook of one of them is a duplicate.
    server.answer_next_with([no_transactions.clone(), no_transactions, first_page]);
    let again = import().await.expect("the second backfill");
    let counts = totals(&again);
    assert_eq!((counts.appended, counts.skipped), (0, 2), "{again:?}");
    let outcome = webhook(
        &ledger,
        proto::PaymentProvider::Paypal,
        &subscription_event(
            "WH-EV1",
            "BILLING.SUBSCRIPTION.ACTIVATED",
            subscription("I-EVONE", "PAYEREVONE", "evone@example.com"),
        ),
    )
    .await;
    assert_eq!(outcome, proto::DeliveryOutcome::Duplicate as i32);
    assert_eq!(event_types(&ledger).await.len(), held);
}

/// The backfill asks Stripe for the API version the mapping reads
/// (`ledger_connectors::stripe::API_VERSION`), whatever the account's default: from
/// 2025-03-31.basil on, an invoice names no charge and a charge no invoice, and a refunded
/// invoice charge was recorded as a second payment.
#[tokio::test]
async fn stripe_requests_pin_the_api_version_the_mapping_reads() {
    let server = HttpReceiver::start().await;
    server.answer_path(
        "/v1/customers?limit=100",
        answer(&json!({"object": "list", "data": [], "has_more": false})),
    );
    let reader = ledger_sync::StripeReader::new(
        ledger_sync::StripeApi {
            api_base: server.url.clone(),
            api_key: ApiSecret::new("sk_test_key".to_owned()),
        },
        Duration::from_secs(5),
    )
    .expect("a reader");
    reader
        .page("/v1/customers", &[], None)
        .await
        .expect("a page");
    let requests = server.requests();
    assert_eq!(
        requests[0].header("stripe-version"),
        Some(ledger_connectors::stripe::API_VERSION)
    );
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer sk_test_key")
    );
}
