//! The HTTP API: OpenAI's completions endpoint (plain and streamed as server-sent events), the model
//! list, health, metrics, the web page and the training view. Every request a client can get wrong
//! is answered with OpenAI's error shape, `{"error": {"message", "type", "param", "code"}}`, and a
//! 4xx status; nothing in a request can make a handler panic.

use super::batcher::{Event, GenRequest, SubmitError};
use super::AppState;
use crate::config::ModelConfig;
use crate::tokenizer::Tokenizer;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// An error as OpenAI shapes it, with the status it goes out with.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn invalid(param: Option<&'static str>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: None,
        }
    }

    pub fn with_status(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), kind, param: None, code: None }
    }

    fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}});
        (self.status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }
}

/// A completion request, checked and tokenized.
#[derive(Debug)]
pub struct Completion {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_k: usize,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub stream: bool,
}

/// The default `max_tokens`, as in OpenAI's API.
pub const DEFAULT_MAX_TOKENS: usize = 16;

/// Names a JSON value's type for error messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(param: &'static str, expected: &str, got: &Value) -> ApiError {
    ApiError::invalid(Some(param), format!("'{param}' must be {expected}, got {}", type_name(got)))
}

/// A non-negative integer field (absent or null: None).
fn uint(body: &serde_json::Map<String, Value>, param: &'static str) -> Result<Option<u64>, ApiError> {
    int_at_least(body, param, 0)
}

/// An integer field of at least `min` (absent or null: None); a smaller one, negative or not, gets
/// the one message "'param' must be at least min, got x".
fn int_at_least(body: &serde_json::Map<String, Value>, param: &'static str, min: u64) -> Result<Option<u64>, ApiError> {
    let too_small = |x: &dyn std::fmt::Display| {
        ApiError::invalid(Some(param), format!("'{param}' must be at least {min}, got {x}"))
    };
    match body.get(param) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(n)) => match (n.as_u64(), n.as_i64()) {
            (Some(x), _) if x >= min => Ok(Some(x)),
            (Some(x), _) => Err(too_small(&x)),
            (None, Some(x)) => Err(too_small(&x)),
            _ => Err(wrong_type(param, "an integer", v)),
        },
        Some(v) => Err(wrong_type(param, "an integer", v)),
    }
}

/// Reads and checks a completion request body against the model's context.
pub fn parse_completion(body: &[u8], config: &ModelConfig, tokenizer: &Tokenizer) -> Result<Completion, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(None, format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(body) = value else {
        return Err(ApiError::invalid(
            None,
            format!("the request body must be a JSON object, got {}", type_name(&value)),
        ));
    };
    let context = config.max_seq_len;

    // the prompt: a string, or a list holding one string (what some clients send)
    let text = match body.get("prompt") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or_default().to_string()
        }
        Some(v @ Value::Array(_)) => {
            return Err(ApiError::invalid(
                Some("prompt"),
                format!(
                    "'prompt' must be a string or a list of one string, got {} items",
                    v.as_array().map_or(0, |a| a.len())
                ),
            ));
        }
        Some(v) => return Err(wrong_type("prompt", "a string", v)),
    };
    // an empty prompt starts a new document, as `sample` does
    let prompt = if text.is_empty() { vec![tokenizer.eot_token()] } else { tokenizer.encode(&text) };
    if prompt.len() >= context {
        return Err(ApiError::invalid(
            Some("prompt"),
            format!(
                "the prompt is {} tokens; the model's context is {context} tokens, so a prompt may have at most {}",
                prompt.len(),
                context - 1
            ),
        )
        .code("context_length_exceeded"));
    }
    let room = context - prompt.len();
    let max_tokens = match int_at_least(&body, "max_tokens", 1)? {
        None => DEFAULT_MAX_TOKENS.min(room),
        Some(n) if n > room as u64 => {
            return Err(ApiError::invalid(
                Some("max_tokens"),
                format!("'max_tokens' is {n} but the prompt's {} tokens leave room for at most {room} in the model's context of {context} tokens", prompt.len()),
            )
            .code("context_length_exceeded"))
        }
        Some(n) => n as usize,
    };
    let temperature = match body.get("temperature") {
        None | Some(Value::Null) => 1.0,
        Some(v @ Value::Number(n)) => match n.as_f64() {
            Some(t) if (0.0..=2.0).contains(&t) => t as f32,
            _ => {
                return Err(ApiError::invalid(
                    Some("temperature"),
                    format!("'temperature' must be between 0 and 2, got {v}"),
                ))
            }
        },
        Some(v) => return Err(wrong_type("temperature", "a number", v)),
    };
    let top_k = uint(&body, "top_k")?.map_or(0, |k| k.min(config.vocab_size as u64) as usize);
    let seed = match body.get("seed") {
        None | Some(Value::Null) => None,
        // OpenAI's seed is a signed 64-bit integer: keep its bits
        Some(Value::Number(n)) if n.as_i64().is_some() || n.as_u64().is_some() => {
            n.as_u64().or(n.as_i64().map(|x| x as u64))
        }
        Some(v) => return Err(wrong_type("seed", "an integer", v)),
    };
    let stop = match body.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            if items.len() > 4 {
                return Err(ApiError::invalid(
                    Some("stop"),
                    format!("'stop' may hold at most 4 strings, got {}", items.len()),
                ));
            }
            items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| wrong_type("stop", "a string or a list of strings", v))
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        Some(v) => return Err(wrong_type("stop", "a string or a list of strings", v)),
    };
    if stop.iter().any(|s| s.is_empty()) {
        return Err(ApiError::invalid(Some("stop"), "'stop' strings must not be empty"));
    }
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(wrong_type("stream", "a boolean", v)),
    };
    // what OpenAI's API has and this server does not: say so rather than ignore it
    for param in ["n", "best_of"] {
        if let Some(n) = uint(&body, param)? {
            if n != 1 {
                let param = if param == "n" { "n" } else { "best_of" };
                return Err(ApiError::invalid(
                    Some(param),
                    format!("'{param}' must be 1 (one completion per request), got {n}"),
                ));
            }
        }
    }
    if body.get("echo").is_some_and(|v| v != &Value::Bool(false) && !v.is_null()) {
        return Err(ApiError::invalid(Some("echo"), "'echo' is not supported"));
    }
    if body.get("logprobs").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::invalid(Some("logprobs"), "'logprobs' is not supported"));
    }
    if body.get("suffix").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::invalid(Some("suffix"), "'suffix' is not supported"));
    }
    Ok(Completion { prompt, max_tokens, temperature, top_k, seed, stop, stream })
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Reads the whole body, up to the size limit and the time limit.
async fn read_body(state: &AppState, request: Request) -> Result<Bytes, ApiError> {
    let limit = state.options.max_body_bytes;
    let read = axum::body::to_bytes(request.into_body(), limit);
    match tokio::time::timeout(state.options.body_timeout, read).await {
        Err(_) => Err(ApiError::with_status(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            format!("the request body did not arrive within {} s", state.options.body_timeout.as_secs()),
        )),
        Ok(Err(e)) => {
            // to_bytes fails on a body over the limit or a broken connection
            let over = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over || e.to_string().contains("length limit") {
                Err(ApiError::with_status(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request_error",
                    format!("the request body is over the limit of {limit} bytes"),
                ))
            } else {
                Err(ApiError::invalid(None, format!("cannot read the request body: {e}")))
            }
        }
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

/// `POST /v1/completions`.
pub async fn completions(State(state): State<Arc<AppState>>, request: Request) -> Response {
    match completions_inner(state, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn completions_inner(state: Arc<AppState>, request: Request) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let Some(engine) = &state.engine else {
        return Err(ApiError::with_status(
            StatusCode::SERVICE_UNAVAILABLE,
            "invalid_request_error",
            "this server has no model: start it with --init MODEL to serve completions",
        ));
    };
    let body = read_body(&state, request).await?;
    let parsed = parse_completion(&body, &engine.config, &state.tokenizer)?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let seed = parsed.seed.unwrap_or_else(|| state.next_seed());
    let request = GenRequest {
        prompt: parsed.prompt,
        max_tokens: parsed.max_tokens,
        temperature: parsed.temperature,
        top_k: parsed.top_k,
        seed,
        stop: parsed.stop,
        arrived,
        events: tx,
    };
    engine.submit(request).map_err(|e| match e {
        SubmitError::QueueFull => ApiError::with_status(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_overloaded",
            format!("the server is at capacity ({} requests waiting): retry later", state.options.engine.queue),
        )
        .code("queue_full"),
        SubmitError::Stopped => ApiError::with_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the generation engine has stopped",
        ),
    })?;
    let id = format!("cmpl-{}", state.next_id.fetch_add(1, Ordering::Relaxed));
    let created = unix_now();
    let model = state.model_id.clone();

    if !parsed.stream {
        let mut text = String::new();
        while let Some(event) = rx.recv().await {
            match event {
                Event::Text(t) => text.push_str(&t),
                Event::Done { finish_reason, prompt_tokens, completion_tokens } => {
                    let body = json!({
                        "id": id, "object": "text_completion", "created": created, "model": model,
                        "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish_reason.as_str()}],
                        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                  "total_tokens": prompt_tokens + completion_tokens},
                    });
                    return Ok(([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response());
                }
            }
        }
        return Err(ApiError::with_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the generation engine stopped mid-request",
        ));
    }

    // streamed: one server-sent event per piece of text, the reason and usage last, then [DONE]
    let chunk = move |text: &str, finish: Option<&str>, usage: Option<Value>| {
        let mut c = json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}],
        });
        if let Some(u) = usage {
            c["usage"] = u;
        }
        Bytes::from(format!("data: {c}\n\n"))
    };
    let stream = futures_util::stream::unfold(Some(rx), move |rx| {
        let chunk = chunk.clone();
        async move {
            let mut rx = rx?;
            let bytes = match rx.recv().await {
                Some(Event::Text(t)) => chunk(&t, None, None),
                Some(Event::Done { finish_reason, prompt_tokens, completion_tokens }) => {
                    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                       "total_tokens": prompt_tokens + completion_tokens});
                    let mut b = chunk("", Some(finish_reason.as_str()), Some(usage)).to_vec();
                    b.extend_from_slice(b"data: [DONE]\n\n");
                    return Some((Ok::<_, std::convert::Infallible>(Bytes::from(b)), None));
                }
                None => return None,
            };
            Some((Ok(bytes), Some(rx)))
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

/// `GET /v1/models`.
pub async fn models(State(state): State<Arc<AppState>>) -> Response {
    let data: Vec<Value> = match &state.engine {
        Some(engine) => vec![json!({
            "id": state.model_id, "object": "model", "created": state.created, "owned_by": "gpt2",
            "context_length": engine.config.max_seq_len,
        })],
        None => Vec::new(),
    };
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /healthz`.
pub async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(json!({
        "status": "ok",
        "model": state.engine.as_ref().map(|_| &state.model_id),
        "context_length": state.engine.as_ref().map(|e| e.config.max_seq_len),
        "training_log": state.log.is_some(),
    }))
    .into_response()
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
        .into_response()
}

/// `GET /`: the web page.
pub async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], include_str!("page.html")).into_response()
}

/// Answers for paths and methods the API does not have.
pub async fn not_found(request: Request) -> Response {
    let path = request.uri().path().chars().take(200).collect::<String>();
    ApiError::with_status(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("no such endpoint: {} {path}", request.method()),
    )
    .into_response()
}

pub async fn method_not_allowed(request: Request) -> Response {
    let path = request.uri().path().chars().take(200).collect::<String>();
    ApiError::with_status(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!("{} is not allowed on {path}", request.method()),
    )
    .into_response()
}
