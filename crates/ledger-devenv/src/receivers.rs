//! An HTTP server that records the requests it gets and answers with scripted statuses: the
//! demo's sample webhook, the notify benchmark's receiver and the notification tests' peer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The largest request the HTTP receiver reads, in bytes.
const REQUEST_BYTES_MAX: usize = 1 << 20;

/// One request the [`HttpReceiver`] got.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub received_at: Instant,
    /// The status it was answered with.
    pub status: u16,
}

impl ReceivedRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(header, _)| *header == name)
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON.
    ///
    /// # Panics
    ///
    /// If the body is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A scripted answer: status, extra headers, body, and a pause before answering (longer than
/// a client's timeout plays a provider that does not answer in time).
#[derive(Debug, Clone, Default)]
pub struct ScriptedAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl ScriptedAnswer {
    /// `status` with a JSON `body`, at once.
    pub fn json(status: u16, body: serde_json::Value) -> ScriptedAnswer {
        ScriptedAnswer {
            status,
            headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }
}

#[derive(Debug, Default)]
struct Script {
    requests: Vec<ReceivedRequest>,
    /// Answers for the next requests (other than those of `routes`), in order.
    answers: VecDeque<ScriptedAnswer>,
    /// Fixed answers by path: every request to the path gets it, the queue is left alone.
    routes: Vec<(String, ScriptedAnswer)>,
    /// Answers by path for the next requests to it, before its fixed answer.
    path_answers: Vec<(String, VecDeque<ScriptedAnswer>)>,
}

/// A local HTTP/1.1 server on a free port: records every request and answers 200, or the
/// statuses queued with [`HttpReceiver::answer_next`] first. Stops on `Drop`.
#[derive(Debug)]
pub struct HttpReceiver {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    script: Arc<Mutex<Script>>,
    task: JoinHandle<()>,
}

impl HttpReceiver {
    /// Starts the server on the current runtime.
    ///
    /// # Panics
    ///
    /// If no local port can be bound.
    pub async fn start() -> HttpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let script = Arc::new(Mutex::new(Script::default()));
        let shared = script.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        HttpReceiver { url, script, task }
    }

    /// Answers the next requests with `statuses`, in order, then 200 again.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.answer_next_with(statuses.iter().map(|status| ScriptedAnswer {
            status: *status,
            body: "ok".to_owned(),
            ..ScriptedAnswer::default()
        }));
    }

    /// Answers the next requests (except those to a path of [`HttpReceiver::answer_path`])
    /// with `answers`, in order, then 200 `ok` again.
    pub fn answer_next_with(&self, answers: impl IntoIterator<Item = ScriptedAnswer>) {
        if let Ok(mut script) = self.script.lock() {
            script.answers.extend(answers);
        }
    }

    /// Answers every request to `path` with `answer`.
    pub fn answer_path(&self, path: &str, answer: ScriptedAnswer) {
        if let Ok(mut script) = self.script.lock() {
            script.routes.push((path.to_owned(), answer));
        }
    }

    /// Answers the next requests to `path` with `answers`, in order, then as before (its
    /// [`HttpReceiver::answer_path`] answer, else the queue).
    pub fn answer_path_next_with(
        &self,
        path: &str,
        answers: impl IntoIterator<Item = ScriptedAnswer>,
    ) {
        if let Ok(mut script) = self.script.lock() {
            script
                .path_answers
                .push((path.to_owned(), answers.into_iter().collect()));
        }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.script
            .lock()
            .map(|script| script.requests.clone())
            .unwrap_or_default()
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One HTTP request as read by [`read_request`].
#[derive(Debug)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Reads one HTTP/1.1 request (head and a `Content-Length` body, at most 1 MiB) from `stream`;
/// `None` when the peer closes or sends more. Header names in lower case.
pub async fn read_request(stream: &mut TcpStream) -> Option<HttpRequest> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            break end;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
        if buffer.len() > REQUEST_BYTES_MAX {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse::<usize>().ok())
        .unwrap_or(0)
        .min(REQUEST_BYTES_MAX);
    let mut body = buffer[header_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => body.extend_from_slice(&chunk[..read]),
        }
    }
    Some(HttpRequest {
        method,
        path,
        headers,
        body,
    })
}

async fn serve(mut stream: TcpStream, script: Arc<Mutex<Script>>) {
    let Some(HttpRequest {
        method,
        path,
        headers,
        body,
    }) = read_request(&mut stream).await
    else {
        return;
    };
    let answer = {
        let Ok(mut script) = script.lock() else {
            return;
        };
        let next = script
            .path_answers
            .iter_mut()
            .filter(|(route, _)| *route == path)
            .find_map(|(_, answers)| answers.pop_front());
        let routed = next.or_else(|| {
            script
                .routes
                .iter()
                .find(|(route, _)| *route == path)
                .map(|(_, answer)| answer.clone())
        });
        let answer = routed
            .or_else(|| script.answers.pop_front())
            .unwrap_or_else(|| ScriptedAnswer {
                status: 200,
                body: "ok".to_owned(),
                ..ScriptedAnswer::default()
            });
        script.requests.push(ReceivedRequest {
            method,
            path,
            headers,
            body,
            received_at: Instant::now(),
            status: answer.status,
        });
        answer
    };
    tokio::time::sleep(answer.delay).await;
    let mut head = format!("HTTP/1.1 {} Scripted\r\n", answer.status);
    if !answer
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        head.push_str("Content-Type: text/plain\r\n");
    }
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        answer.body.len(),
        answer.body
    ));
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
