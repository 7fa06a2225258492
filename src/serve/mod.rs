//! `serve`: a model behind OpenAI's completions API, with Prometheus metrics, a web page, and a
//! view of a training run's curves.
//!
//! * `batcher.rs`: the engine thread that batches whatever requests are in flight, through the
//!   model's forward pass for many sequences at once, each with its own KV cache (`src/cpu/decode.rs`).
//! * `api.rs`: the HTTP endpoints and OpenAI's request and error shapes.
//! * `metrics.rs`: the counters and histograms behind `GET /metrics`.
//! * `page.html`: the web page at `/`.
//!
//! The HTTP side runs on tokio (hyper underneath axum); the model runs on its own thread, so a
//! forward pass never blocks the connections.

pub mod api;
pub mod batcher;
pub mod metrics;

use self::batcher::{Engine, EngineOptions};
use self::metrics::Metrics;
use crate::config::GPT2_VOCAB_SIZE;
use crate::model::checkpoint::Checkpoint;
use crate::tokenizer::Tokenizer;
use anyhow::{bail, Context, Result};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};

/// Limits and batching settings.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    pub engine: EngineOptions,
    /// Request bodies over this many bytes get 413.
    pub max_body_bytes: usize,
    /// Connections beyond this many are closed at once.
    pub max_connections: usize,
    /// A connection that sends no complete request head within this time is closed.
    pub header_timeout: Duration,
    /// A request body that does not arrive within this time gets 408.
    pub body_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            engine: EngineOptions { max_batch: 32, queue: 256, prefill_tokens: 256 },
            max_body_bytes: 1 << 20,
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
        }
    }
}

/// What every handler can see.
pub struct AppState {
    pub engine: Option<Engine>,
    pub tokenizer: Arc<Tokenizer>,
    pub metrics: Arc<Metrics>,
    /// The name `/v1/models` lists (the model file's name without extension).
    pub model_id: String,
    pub created: u64,
    /// The training log the page plots, if any.
    pub log: Option<PathBuf>,
    pub options: ServeOptions,
    pub next_id: AtomicU64,
    seed_counter: AtomicU64,
}

impl AppState {
    /// Builds the state and starts the engine when there is a model.
    pub fn new(model: Option<(String, Checkpoint)>, log: Option<PathBuf>, options: ServeOptions) -> Result<AppState> {
        AppState::new_with_tokenizer(model, log, options, Tokenizer::gpt2())
    }

    /// `new`, serving with `tokenizer` (the model's: `serve --tokenizer DIR`).
    pub fn new_with_tokenizer(
        model: Option<(String, Checkpoint)>,
        log: Option<PathBuf>,
        options: ServeOptions,
        tokenizer: Tokenizer,
    ) -> Result<AppState> {
        let tokenizer = Arc::new(tokenizer);
        let metrics = Arc::new(Metrics::new());
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if options.engine.max_batch == 0 || options.engine.queue == 0 {
            bail!("--max-batch and --queue must be at least 1");
        }
        let (engine, model_id) = match model {
            Some((id, ckpt)) => {
                if ckpt.config.vocab_size != tokenizer.vocab_size() {
                    let which = if tokenizer.vocab_size() == GPT2_VOCAB_SIZE { "GPT-2's" } else { "the tokenizer's" };
                    bail!(
                        "the model has a vocabulary of {} tokens, not {which} {}: the tokenizer cannot serve it \
                         (give the --tokenizer it was trained with)",
                        ckpt.config.vocab_size,
                        tokenizer.vocab_size()
                    );
                }
                let engine =
                    Engine::start(ckpt.config, ckpt.params, tokenizer.clone(), metrics.clone(), options.engine)
                        .context("cannot start the engine thread")?;
                (Some(engine), id)
            }
            None => (None, String::new()),
        };
        Ok(AppState {
            engine,
            tokenizer,
            metrics,
            model_id,
            created,
            log,
            options,
            next_id: AtomicU64::new(1),
            seed_counter: AtomicU64::new(created ^ 0x5eed),
        })
    }

    /// A seed for a request that gave none: different for every request.
    pub fn next_seed(&self) -> u64 {
        let n = self.seed_counter.fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed);
        crate::rng::Rng::new(n).next_u64()
    }
}

/// The endpoints: each path and what answers it. The router is built from this list and the
/// request counter labels requests by it, so a route is added in one place.
fn routes() -> [(&'static str, MethodRouter<Arc<AppState>>); 7] {
    [
        ("/", get(api::page)),
        ("/v1/completions", post(api::completions)),
        ("/v1/models", get(api::models)),
        ("/healthz", get(api::healthz)),
        ("/metrics", get(api::metrics)),
        ("/v1/training/log", get(training_log)),
        ("/training.svg", get(training_svg)),
    ]
}

/// The endpoints of `routes`, each request counted in the metrics by endpoint and status.
pub fn router(state: Arc<AppState>) -> Router {
    let routes = routes();
    let known: Arc<[&'static str]> = routes.iter().map(|(path, _)| *path).collect();
    routes
        .into_iter()
        .fold(Router::new(), |router, (path, handler)| router.route(path, handler))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state((state.clone(), known), count_requests))
        .with_state(state)
}

/// The middleware that counts requests; paths not in `routes` share one label so a client cannot
/// grow the metrics without bound.
async fn count_requests(
    State((state, known)): State<(Arc<AppState>, Arc<[&'static str]>)>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let endpoint = known.iter().find(|&&k| k == path).copied().unwrap_or("other");
    let response = next.run(request).await;
    state.metrics.count_request(endpoint, response.status().as_u16());
    response
}

/// `GET /v1/training/log`: the records of the training log, as a JSON list.
async fn training_log(State(state): State<Arc<AppState>>) -> Response {
    let Some(path) = &state.log else {
        return api::ApiError::with_status(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "no training log: start the server with --log LOG.jsonl",
        )
        .into_response();
    };
    match crate::plot::read_log(path) {
        Ok(log) => axum::Json(serde_json::json!({"path": path.display().to_string(), "records": log.records_json()}))
            .into_response(),
        Err(e) => api::ApiError::with_status(StatusCode::INTERNAL_SERVER_ERROR, "server_error", format!("{e:#}"))
            .into_response(),
    }
}

/// `GET /training.svg`: the training curves drawn by `plot`, as they are now.
async fn training_svg(State(state): State<Arc<AppState>>) -> Response {
    let Some(path) = state.log.clone() else {
        return api::ApiError::with_status(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "no training log: start the server with --log LOG.jsonl",
        )
        .into_response();
    };
    // reading and drawing is blocking work: keep it off the connection threads
    let drawn =
        tokio::task::spawn_blocking(move || crate::plot::read_log(&path).and_then(|log| crate::plot::render_svg(&log)))
            .await;
    match drawn {
        Ok(Ok(svg)) => {
            ([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "no-cache")], svg).into_response()
        }
        Ok(Err(e)) => api::ApiError::with_status(StatusCode::INTERNAL_SERVER_ERROR, "server_error", format!("{e:#}"))
            .into_response(),
        Err(e) => api::ApiError::with_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            format!("drawing failed: {e}"),
        )
        .into_response(),
    }
}

/// Accepts connections until `shutdown` resolves. Each connection is HTTP/1.1 with keep-alive; at
/// most `max_connections` are open at once (more are closed at once), and one that sends no
/// request head within `header_timeout` is closed, so idle or silent clients cannot pile up.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, shutdown: impl std::future::Future<Output = ()>) {
    let app = router(state.clone());
    let slots = Arc::new(Semaphore::new(state.options.max_connections));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // out of file descriptors and the like: wait a little rather than spin
                eprintln!("serve: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            state.metrics.refused_connections.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let header_timeout = state.options.header_timeout;
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true);
            // a connection error is the client's business (reset, garbage): nothing to do
            let _ = builder.serve_connection(io, service).await;
            drop(permit);
        });
    }
}

/// A server running on its own thread and tokio runtime; it stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free one) and starts serving.
    pub fn start(addr: &str, state: AppState) -> Result<Server> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the tokio runtime")?;
        let listener = runtime.block_on(TcpListener::bind(addr)).with_context(|| format!("cannot listen on {addr}"))?;
        let addr = listener.local_addr().context("cannot read the listening address")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let state = Arc::new(state);
        let thread = std::thread::Builder::new()
            .name("gpt2-serve".into())
            .spawn(move || {
                runtime.block_on(serve(listener, state, async {
                    let _ = stopped.await;
                }));
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .context("cannot start the server thread")?;
        Ok(Server { addr, stop: Some(stop), thread: Some(thread) })
    }

    /// Blocks until the server thread ends.
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
