//! The peer of the webhook benchmark (`scripts/bench_webhook.sh`): a bare actix-web handler that
//! reads a Telegram update, checks the secret header and parses the JSON, then answers 200 —
//! what any webhook must do, without careloop's persistence.
//!
//!   cargo run --example bare_webhook -- <port>

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

async fn webhook(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let secret = req
        .headers()
        .get("X-Telegram-Bot-Api-Secret-Token")
        .map(|v| v.as_bytes());
    if secret != Some(b"bench-secret-0123456789".as_slice()) {
        return HttpResponse::Unauthorized().finish();
    }
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) if v.get("update_id").is_some() => {
            HttpResponse::Ok().json(serde_json::json!({ "ok": true }))
        }
        _ => HttpResponse::BadRequest().finish(),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(8099);
    HttpServer::new(|| {
        App::new()
            .app_data(web::PayloadConfig::new(64 * 1024))
            .route("/channels/telegram/webhook", web::post().to(webhook))
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await
}
