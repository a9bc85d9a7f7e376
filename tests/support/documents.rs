//! A server of one JSON document on 127.0.0.1 (a published key set: GitHub's
//! secret scanning keys, an identity provider's JWKS), counting its fetches,
//! that can be taken down or slowed; stopped with the test's runtime.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct DocumentServer {
    /// The document's URL (`path` on the server's address).
    pub url: String,
    pub fetches: Arc<AtomicUsize>,
    /// Answer 503 while set.
    pub down: Arc<AtomicBool>,
    /// Wait this many milliseconds before answering.
    pub delay_ms: Arc<AtomicU64>,
    /// The document served (replaceable: a provider rotating its keys).
    pub document: Arc<Mutex<String>>,
}

impl DocumentServer {
    pub fn fetched(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn set_delay_ms(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    pub fn serve(&self, document: &Value) {
        *self.document.lock().unwrap() = document.to_string();
    }
}

/// Serves `document` at `path` (every GET, whatever its path, gets it).
pub async fn document_server(path: &str, document: &Value, down: bool) -> DocumentServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = DocumentServer {
        url: format!("http://{}{path}", listener.local_addr().unwrap()),
        fetches: Arc::default(),
        down: Arc::new(AtomicBool::new(down)),
        delay_ms: Arc::default(),
        document: Arc::new(Mutex::new(document.to_string())),
    };
    let (fetches, down, delay, body) = (
        server.fetches.clone(),
        server.down.clone(),
        server.delay_ms.clone(),
        server.document.clone(),
    );
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            fetches.fetch_add(1, Ordering::SeqCst);
            let body = body.lock().unwrap().clone();
            let down = down.load(Ordering::SeqCst);
            let delay = delay.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                let answer = if down {
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string()
                } else {
                    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                };
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    server
}
