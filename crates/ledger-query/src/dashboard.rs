//! The dashboard: one self-contained page (HTML, CSS and JS, no CDN), embedded in the binary.
//! It calls the `/v1` API with a token from the URL fragment (`#token=...`) or a prompt,
//! kept in `sessionStorage`.

use actix_web::HttpResponse;

const PAGE: &str = include_str!("../assets/dashboard.html");

pub(crate) async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:"))
        .body(PAGE)
}
