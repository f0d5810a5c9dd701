//! The kill switch from the outside: the admin API (`/admin/v1/revocations`),
//! the revocation feed (`/v1/revocations`, JSON and Server-Sent Events) and
//! RFC 7009 self-revocation (`/oauth2/revoke`).

use std::collections::VecDeque;

use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};
use writ_proto::sse;

use super::http::Reply;
use super::server::Server;
use super::time::parse_rfc3339;
use super::wait::WAIT;

/// The admin collection of revocation entries.
pub const REVOCATIONS: &str = "/admin/v1/revocations";
/// The JSON revocation feed.
pub const FEED: &str = "/v1/revocations";
/// The Server-Sent Events revocation feed.
pub const FEED_STREAM: &str = "/v1/revocations/stream";

/// What `POST /admin/v1/revocations` answered with 201.
#[derive(Debug, Clone)]
pub struct Revocation {
    /// 32 hex digits.
    pub id: String,
    pub seq: u64,
    /// RFC 3339.
    pub effective_at: String,
    /// The whole response body.
    pub body: Value,
}

impl Revocation {
    /// `effective_at` as Unix seconds (fraction dropped), comparable with `iat`.
    pub fn effective_at_unix(&self) -> i64 {
        parse_rfc3339(&self.effective_at)
            .unwrap_or_else(|| panic!("effective_at {:?} is not RFC 3339", self.effective_at))
    }
}

/// Whether `id` looks like an entry id: 32 hex digits.
pub fn is_entry_id(id: &str) -> bool {
    id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())
}

/// Asserts a created entry (201 `{"id", "seq", "effective_at"}`) and takes it apart.
#[track_caller]
pub fn assert_revocation_created(reply: &Reply) -> Revocation {
    assert_eq!(
        reply.status,
        201,
        "expected a revocation entry, got {}",
        reply.describe()
    );
    let body = &reply.json;
    let id = body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {body}"))
        .to_string();
    assert!(is_entry_id(&id), "id {id:?} is not 32 hex digits");
    let seq = body["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no integer seq in {body}"));
    let effective_at = body["effective_at"]
        .as_str()
        .unwrap_or_else(|| panic!("no effective_at in {body}"))
        .to_string();
    assert!(
        parse_rfc3339(&effective_at).is_some(),
        "effective_at {effective_at:?} is not RFC 3339"
    );
    Revocation {
        id,
        seq,
        effective_at,
        body: body.clone(),
    }
}

/// The body of `POST /admin/v1/revocations` (no reason).
pub fn revocation_body(selector: Value, block: bool, until: Option<&str>) -> Value {
    let mut body = json!({"selector": selector, "block": block});
    if let Some(until) = until {
        body["until"] = json!(until);
    }
    body
}

/// The `seq` of a feed or admin entry.
#[track_caller]
pub fn entry_seq(entry: &Value) -> u64 {
    entry["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no integer seq in {entry}"))
}

/// The `id` of a feed or admin entry.
#[track_caller]
pub fn entry_id(entry: &Value) -> &str {
    entry["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {entry}"))
}

/// The `entries` array of a feed page or an admin listing.
#[track_caller]
pub fn entries_of(page: &Value) -> Vec<Value> {
    page["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no entries array in {page}"))
        .clone()
}

impl Server {
    /// Any call to writ with an optional bearer token and an optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        json_body: Option<String>,
    ) -> Reply {
        let mut request = self.client().request(method.clone(), self.endpoint(path));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = json_body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
        Reply::read(response).await
    }

    /// `POST /admin/v1/revocations` of `body` as the admin.
    pub async fn post_revocation(&self, body: &Value) -> Reply {
        self.post_revocation_text(body.to_string()).await
    }

    /// `POST /admin/v1/revocations` of a raw body (`application/json`) as the admin.
    pub async fn post_revocation_text(&self, body: String) -> Reply {
        self.call(
            Method::POST,
            REVOCATIONS,
            Some(self.admin_token()),
            Some(body),
        )
        .await
    }

    /// Revokes by `selector` as the admin and asserts the entry was created.
    pub async fn revoke(&self, selector: Value, block: bool, until: Option<&str>) -> Revocation {
        let body = revocation_body(selector, block, until);
        assert_revocation_created(&self.post_revocation(&body).await)
    }

    /// `DELETE /admin/v1/revocations/{id}` as the admin.
    pub async fn lift(&self, id: &str) -> Reply {
        self.call(
            Method::DELETE,
            &format!("{REVOCATIONS}/{id}"),
            Some(self.admin_token()),
            None,
        )
        .await
    }

    /// `GET /admin/v1/revocations/{id}` as the admin.
    pub async fn revocation(&self, id: &str) -> Reply {
        self.call(
            Method::GET,
            &format!("{REVOCATIONS}/{id}"),
            Some(self.admin_token()),
            None,
        )
        .await
    }

    /// `GET /admin/v1/revocations<query>` as the admin (`query` is "" or starts with `?`).
    pub async fn list_revocations(&self, query: &str) -> Reply {
        self.call(
            Method::GET,
            &format!("{REVOCATIONS}{query}"),
            Some(self.admin_token()),
            None,
        )
        .await
    }

    /// `GET /v1/revocations<query>` with `bearer` (or no credential).
    pub async fn feed_as(&self, bearer: Option<&str>, query: &str) -> Reply {
        self.call(Method::GET, &format!("{FEED}{query}"), bearer, None)
            .await
    }

    /// One page of the JSON feed as the admin; asserts 200.
    pub async fn feed(&self, since: u64, limit: Option<u64>) -> Value {
        let query = match limit {
            Some(limit) => format!("?since={since}&limit={limit}"),
            None => format!("?since={since}"),
        };
        let reply = self.feed_as(Some(self.admin_token()), &query).await;
        assert_eq!(reply.status, 200, "GET {FEED}{query}: {}", reply.describe());
        reply.json
    }

    /// Every entry of the JSON feed from the start, following `next_since`.
    pub async fn feed_entries(&self) -> Vec<Value> {
        let mut entries = Vec::new();
        let mut since = 0;
        for _ in 0..1000 {
            let page = self.feed(since, None).await;
            let batch = entries_of(&page);
            if batch.is_empty() {
                return entries;
            }
            let next = page["next_since"]
                .as_u64()
                .unwrap_or_else(|| panic!("no integer next_since in {page}"));
            assert!(
                next > since,
                "next_since {next} does not move past since {since} in {page}"
            );
            entries.extend(batch);
            since = next;
        }
        panic!("the feed did not end after 1000 pages")
    }

    /// `GET /v1/revocations/stream` with `bearer`, `?since=` and `Last-Event-ID`
    /// when given; resolves once the response headers arrive.
    pub async fn feed_stream_response(
        &self,
        bearer: Option<&str>,
        since: Option<u64>,
        last_event_id: Option<u64>,
    ) -> reqwest::Response {
        let path = match since {
            Some(since) => format!("{FEED_STREAM}?since={since}"),
            None => FEED_STREAM.to_string(),
        };
        let mut request = self
            .client()
            .get(self.endpoint(&path))
            .header(ACCEPT, "text/event-stream");
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        request
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"))
    }

    /// Opens the SSE feed as the admin; asserts 200 `text/event-stream`.
    pub async fn open_feed_stream(
        &self,
        since: Option<u64>,
        last_event_id: Option<u64>,
    ) -> EventStream {
        let response = self
            .feed_stream_response(Some(self.admin_token()), since, last_event_id)
            .await;
        EventStream::new(response).await
    }

    /// `POST /oauth2/revoke` (RFC 7009) of `token`, with no client authentication.
    pub async fn self_revoke(&self, token: &str) -> Reply {
        let form = [
            ("token".to_string(), token.to_string()),
            ("token_type_hint".to_string(), "access_token".to_string()),
        ];
        self.post_form("/oauth2/revoke", &form, None).await
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct FeedEvent {
    /// `id:`, the entry's seq.
    pub id: Option<String>,
    /// `event:`.
    pub event: Option<String>,
    /// The `data:` lines joined by `\n`.
    pub data: String,
}

impl FeedEvent {
    /// `id:` as a seq.
    #[track_caller]
    pub fn seq(&self) -> u64 {
        self.id
            .as_deref()
            .and_then(|id| id.trim().parse().ok())
            .unwrap_or_else(|| panic!("event without a numeric id: {self:?}"))
    }

    /// `data:` as JSON (the entry).
    #[track_caller]
    pub fn entry(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|error| panic!("event data is not JSON ({error}): {self:?}"))
    }
}

/// The most one event may hold: far above any entry the broker sends.
const MAX_EVENT_BYTES: usize = 1 << 20;

/// An open `text/event-stream` response, read event by event with
/// writ-proto's decoder (the SDK's); comments (heartbeats) are skipped.
pub struct EventStream {
    response: reqwest::Response,
    decoder: sse::Decoder,
    ready: VecDeque<FeedEvent>,
}

impl EventStream {
    /// Asserts 200 and `text/event-stream`, and reads on from there.
    pub async fn new(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if status != 200 || !content_type.starts_with("text/event-stream") {
            let reply = Reply::read(response).await;
            panic!(
                "expected a 200 text/event-stream, got {} ({content_type:?})",
                reply.describe()
            );
        }
        Self {
            response,
            decoder: sse::Decoder::new(MAX_EVENT_BYTES),
            ready: VecDeque::new(),
        }
    }

    /// The next event, waiting at most [`WAIT`]; panics when none comes or the stream ends.
    pub async fn next_event(&mut self) -> FeedEvent {
        match tokio::time::timeout(WAIT, self.read_event()).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!("the event stream ended"),
            Err(_) => panic!("no event on the stream within {WAIT:?}"),
        }
    }

    /// The next `count` events.
    pub async fn take(&mut self, count: usize) -> Vec<FeedEvent> {
        let mut events = Vec::with_capacity(count);
        while events.len() < count {
            events.push(self.next_event().await);
        }
        events
    }

    /// Events up to and including the first whose seq is at least `seq`.
    pub async fn until_seq(&mut self, seq: u64) -> Vec<FeedEvent> {
        let mut events = Vec::new();
        loop {
            let event = self.next_event().await;
            let reached = event.seq() >= seq;
            events.push(event);
            if reached {
                return events;
            }
        }
    }

    async fn read_event(&mut self) -> Option<FeedEvent> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.push_bytes(&bytes),
                Ok(None) => return None,
                Err(error) => panic!("reading the event stream: {error}"),
            }
        }
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        let ready = &mut self.ready;
        self.decoder
            .push(bytes, |event| {
                ready.push_back(FeedEvent {
                    id: event.id,
                    event: event.event,
                    data: String::from_utf8(event.data).expect("the event stream is UTF-8"),
                });
                Ok::<_, sse::TooLarge>(())
            })
            .unwrap_or_else(|error| panic!("reading the event stream: {error}"));
    }
}
