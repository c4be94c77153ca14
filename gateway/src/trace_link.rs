//! From an answer to its trace: with `TRACE_UI_URL` set, every answer of the gateway links to
//! its trace in the trace UI (Jaeger's), so a user who just sent a `curl` is one click away
//! from the waterfall.
//!
//! The link is `<TRACE_UI_URL>/trace/<trace id>`, sent twice: as a `Link` header
//! (`Link: <http://localhost:16686/trace/4bf9…>; rel="trace"`, RFC 8288) on every answer, and
//! as a `trace_url` field beside `trace_id` in every JSON body, success and error alike.
//!
//! [`link_to_trace`] is the gateway's outermost middleware, so it sees every answer after the
//! tracing layer has written its `traceresponse` header, whatever produced the answer (a
//! handler, an extractor's rejection, the 404 fallback, a size limit). It reads the trace id
//! from that header, and links only sampled traces: an unsampled one never reaches the UI,
//! and a link to it would lead to "trace not found".

use std::sync::Arc;

use axum::{
    body::{Body, HttpBody as _, to_bytes},
    extract::{Request, State},
    http::{HeaderValue, header},
    middleware::Next,
    response::Response,
};
use common::propagation::parse_traceparent;
use reqwest::Url;

/// The largest JSON body the link is added to. The gateway's own answers are a few hundred
/// bytes; anything larger is passed on untouched, with the `Link` header only.
const MAX_LINKED_BODY: usize = 64 * 1024;

/// Where the trace UI is: `TRACE_UI_URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceUi {
    base: Url,
}

impl TraceUi {
    /// A UI at `base` (`http://localhost:16686`, or with a path prefix).
    pub fn new(base: Url) -> Self {
        TraceUi { base }
    }

    /// The page of one trace.
    pub fn trace_url(&self, trace_id: &str) -> String {
        format!(
            "{}/trace/{trace_id}",
            self.base.as_str().trim_end_matches('/')
        )
    }
}

/// Adds the trace's link to the answer; see the module documentation.
pub async fn link_to_trace(
    State(ui): State<Arc<TraceUi>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    let sampled_trace = response
        .headers()
        .get("traceresponse")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_traceparent)
        .filter(|(_, _, flags)| flags.is_sampled())
        .map(|(trace_id, _, _)| trace_id.to_string());
    let Some(trace_id) = sampled_trace else {
        return response;
    };
    let url = ui.trace_url(&trace_id);
    let mut response = with_trace_url_field(response, &url).await;
    if let Ok(link) = HeaderValue::try_from(format!("<{url}>; rel=\"trace\"")) {
        response.headers_mut().append(header::LINK, link);
    }
    response
}

/// Adds `"trace_url": url` to a JSON object body; any other body is returned as it was.
async fn with_trace_url_field(response: Response, url: &str) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    // The gateway's JSON bodies are complete in memory, so their size is known exactly.
    let small = response
        .body()
        .size_hint()
        .upper()
        .is_some_and(|length| length <= MAX_LINKED_BODY as u64);
    if !is_json || !small {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // The length changes; hyper writes the new one.
    parts.headers.remove(header::CONTENT_LENGTH);
    let Ok(bytes) = to_bytes(body, MAX_LINKED_BODY).await else {
        // Cannot happen for a body whose size was known, but a broken body stays broken.
        return Response::from_parts(parts, Body::empty());
    };
    let linked = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut object)) => {
            object.insert("trace_url".to_owned(), url.into());
            serde_json::to_vec(&object).ok()
        }
        _ => None,
    };
    match linked {
        Some(body) => Response::from_parts(parts, Body::from(body)),
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_url_is_the_ui_base_and_the_trace_page() {
        for base in ["http://localhost:16686", "http://localhost:16686/"] {
            let ui = TraceUi::new(Url::parse(base).unwrap());
            assert_eq!(
                ui.trace_url("4bf92f3577b34da6a3ce929d0e0e4736"),
                "http://localhost:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736"
            );
        }
        let prefixed = TraceUi::new(Url::parse("https://ops.example/jaeger/").unwrap());
        assert_eq!(
            prefixed.trace_url("4bf92f3577b34da6a3ce929d0e0e4736"),
            "https://ops.example/jaeger/trace/4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }
}
