//! The engine: one thread that owns the model and runs "continuous batching". Requests wait in a
//! bounded queue; at every step the engine takes in as many as the batch has room for, feeds each
//! active sequence its next input (a chunk of its prompt, or the token it sampled last), runs one
//! `Decoder::forward` (`src/cpu/decode.rs`) for all of them, then samples each one's next token and sends the text
//! to its client. A sequence leaves the batch when it is done or when its client has gone away
//! (its event channel is closed), so a new request never waits for an old one to finish.
//!
//! The HTTP side (`api.rs`) talks to the engine only through `Engine::submit` and the events that
//! come back on each request's channel.

use super::metrics::Metrics;
use crate::config::ModelConfig;
use crate::cpu::decode::{Decoder, KvCache};
use crate::rng::Rng;
use crate::sample::sample_token;
use crate::tokenizer::{StreamDecoder, Tokenizer};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// A validated completion request, in tokens.
pub struct GenRequest {
    /// At least one token; `prompt.len() + max_tokens <= maxT` (checked by `api.rs`).
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_k: usize,
    pub seed: u64,
    /// Generation ends before the first of these strings (which is not returned).
    pub stop: Vec<String>,
    pub arrived: Instant,
    pub events: mpsc::UnboundedSender<Event>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// `<|endoftext|>` or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// What the engine sends back about one request.
#[derive(Debug)]
pub enum Event {
    /// More text (complete UTF-8, never part of a stop string).
    Text(String),
    Done {
        finish_reason: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
}

/// Why a request was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue holds its maximum.
    QueueFull,
    /// The engine thread has stopped.
    Stopped,
}

/// How the engine batches.
#[derive(Clone, Copy, Debug)]
pub struct EngineOptions {
    /// The most sequences in one forward pass.
    pub max_batch: usize,
    /// The most requests waiting for a place in the batch.
    pub queue: usize,
    /// The most prompt tokens fed in one step over all sequences (a long prompt is fed in chunks,
    /// so the sequences already decoding are not held up for long).
    pub prefill_tokens: usize,
}

/// The handle the HTTP side holds.
pub struct Engine {
    tx: mpsc::Sender<GenRequest>,
    pub config: ModelConfig,
    metrics: Arc<Metrics>,
}

impl Engine {
    /// Starts the engine thread, which lives until every `Engine` handle is dropped.
    pub fn start(
        config: ModelConfig,
        params: Vec<f32>,
        tokenizer: Arc<Tokenizer>,
        metrics: Arc<Metrics>,
        options: EngineOptions,
    ) -> std::io::Result<Engine> {
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let m = metrics.clone();
        std::thread::Builder::new()
            .name("gpt2-engine".into())
            .spawn(move || run(config, &params, &tokenizer, &m, rx, options))?;
        Ok(Engine { tx, config, metrics })
    }

    /// Queues a request, or says why not (at once: it never waits).
    pub fn submit(&self, request: GenRequest) -> Result<(), SubmitError> {
        self.metrics.queue_depth.inc();
        self.tx.try_send(request).map_err(|e| {
            self.metrics.queue_depth.dec();
            match e {
                mpsc::error::TrySendError::Full(_) => SubmitError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => SubmitError::Stopped,
            }
        })
    }
}

/// One sequence in the batch.
struct Seq<'t> {
    request: GenRequest,
    cache: KvCache,
    /// How many prompt tokens the cache holds.
    fed: usize,
    generated: Vec<u32>,
    rng: Rng,
    decoder: StreamDecoder<'t>,
    /// All the text generated so far, and how much of it has been sent.
    text: String,
    sent: usize,
    last_token_at: Option<Instant>,
}

impl Seq<'_> {
    /// This step's input: the next chunk of the prompt (at most `budget` tokens), or the last token.
    fn input_len(&self, budget: usize) -> usize {
        let left = self.request.prompt.len() - self.fed;
        if left > 0 {
            left.min(budget)
        } else {
            1
        }
    }

    /// Adds decoded text; sends what is safe to send. Returns true when a stop string was found
    /// (the text before it has been sent and the sequence is done).
    fn push_text(&mut self, chunk: &str) -> bool {
        self.text.push_str(chunk);
        let stops = &self.request.stop;
        // the earliest stop string in the text (search from where an unsent one could start)
        let longest = stops.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut from = self.sent.saturating_sub(longest);
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        if let Some(at) = stops.iter().filter_map(|s| self.text[from..].find(s.as_str()).map(|i| from + i)).min() {
            self.send_until(at);
            return true;
        }
        // hold back a tail that could be the beginning of a stop string
        let held = stops
            .iter()
            .flat_map(|s| (1..s.len()).filter(|&k| s.is_char_boundary(k)).map(move |k| &s[..k]))
            .filter(|prefix| self.text.ends_with(prefix))
            .map(|prefix| prefix.len())
            .max()
            .unwrap_or(0);
        self.send_until(self.text.len() - held);
        false
    }

    fn send_until(&mut self, end: usize) {
        if end > self.sent {
            // a send error means the client left: the next step drops the sequence
            let _ = self.request.events.send(Event::Text(self.text[self.sent..end].to_string()));
            self.sent = end;
        }
    }

    /// Ends the sequence: flushes what was held back (the start of a stop string that never came)
    /// and any unfinished character, then says why it ended.
    fn finish(&mut self, reason: FinishReason, metrics: &Metrics) {
        let rest = self.decoder.finish();
        if self.push_text(&rest) {
            return self.done(FinishReason::Stop, metrics);
        }
        self.send_until(self.text.len());
        self.done(reason, metrics);
    }

    fn done(&mut self, reason: FinishReason, metrics: &Metrics) {
        // counted out before the client hears it is done, so the metrics it reads next agree
        metrics.active_sequences.dec();
        metrics.request_duration.observe(self.request.arrived.elapsed().as_secs_f64());
        let _ = self.request.events.send(Event::Done {
            finish_reason: reason,
            prompt_tokens: self.request.prompt.len(),
            completion_tokens: self.generated.len(),
        });
    }
}

/// Takes a request from the queue into the batch (unless its client has already gone).
fn admit<'t>(
    request: GenRequest,
    active: &mut Vec<Seq<'t>>,
    config: &ModelConfig,
    tokenizer: &'t Tokenizer,
    metrics: &Metrics,
) {
    metrics.queue_depth.dec();
    if request.events.is_closed() {
        metrics.cancelled.inc();
        return;
    }
    metrics.prompt_tokens.inc_by(request.prompt.len() as u64);
    let cache = KvCache::new(config, request.prompt.len() + request.max_tokens);
    let rng = Rng::new(request.seed);
    metrics.active_sequences.inc();
    active.push(Seq {
        request,
        cache,
        fed: 0,
        generated: Vec::new(),
        rng,
        decoder: tokenizer.stream_decoder(),
        text: String::new(),
        sent: 0,
        last_token_at: None,
    });
}

/// The engine thread's loop.
fn run(
    config: ModelConfig,
    params: &[f32],
    tokenizer: &Tokenizer,
    metrics: &Metrics,
    mut rx: mpsc::Receiver<GenRequest>,
    options: EngineOptions,
) {
    let mut model = Decoder::new(config, params);
    let mut active: Vec<Seq> = Vec::new();
    loop {
        // wait for work when there is none; then take in whatever fits
        if active.is_empty() {
            match rx.blocking_recv() {
                Some(request) => admit(request, &mut active, &config, tokenizer, metrics),
                None => return, // every Engine handle is gone: the server has stopped
            }
        }
        while active.len() < options.max_batch {
            match rx.try_recv() {
                Ok(request) => admit(request, &mut active, &config, tokenizer, metrics),
                Err(_) => break,
            }
        }
        // a client that went away frees its place at once
        active.retain(|s| {
            let gone = s.request.events.is_closed();
            if gone {
                metrics.cancelled.inc();
                metrics.active_sequences.dec();
            }
            !gone
        });
        if active.is_empty() {
            continue;
        }

        // this step's inputs: decoding sequences first, then prompt chunks within the budget
        let mut budget = options.prefill_tokens.max(1);
        let mut lens = vec![0usize; active.len()];
        for (len, s) in lens.iter_mut().zip(&active) {
            if s.fed == s.request.prompt.len() {
                *len = 1;
            }
        }
        for (len, s) in lens.iter_mut().zip(&active) {
            if s.fed < s.request.prompt.len() && budget > 0 {
                *len = s.input_len(budget);
                budget -= *len;
            }
        }
        let mut caches = Vec::new();
        let mut inputs: Vec<&[u32]> = Vec::new();
        let mut stepped = Vec::new();
        for (i, (s, &len)) in active.iter_mut().zip(&lens).enumerate() {
            if len == 0 {
                continue;
            }
            let Seq { cache, request, fed, generated, .. } = s;
            inputs.push(if *fed < request.prompt.len() {
                &request.prompt[*fed..*fed + len]
            } else {
                &generated[generated.len() - 1..]
            });
            caches.push(cache);
            stepped.push(i);
        }
        metrics.batch_size.observe(stepped.len() as f64);
        let vp = config.padded_vocab_size;
        let logits = model.forward(&mut caches, &inputs).to_vec();

        // sample each sequence's next token and send its text
        let mut finished = Vec::new();
        for (row, &i) in stepped.iter().enumerate() {
            let s = &mut active[i];
            if s.fed < s.request.prompt.len() {
                s.fed += lens[i];
                if s.fed < s.request.prompt.len() {
                    continue; // more prompt to read before the first token
                }
            }
            let r = &s.request;
            let token =
                sample_token(&logits[row * vp..(row + 1) * vp], config.vocab_size, r.temperature, r.top_k, &mut s.rng);
            s.generated.push(token);
            metrics.generated_tokens.inc();
            let now = Instant::now();
            match s.last_token_at {
                None => metrics.time_to_first_token.observe((now - r.arrived).as_secs_f64()),
                Some(t) => metrics.time_per_token.observe((now - t).as_secs_f64()),
            }
            s.last_token_at = Some(now);
            if token == tokenizer.eot_token() {
                s.finish(FinishReason::Stop, metrics);
                finished.push(i);
                continue;
            }
            // a sampled id is below the vocabulary size, so decoding cannot fail
            let chunk = s.decoder.push(token).unwrap_or_default();
            if s.push_text(&chunk) {
                s.done(FinishReason::Stop, metrics);
                finished.push(i);
            } else if s.generated.len() == s.request.max_tokens {
                s.finish(FinishReason::Length, metrics);
                finished.push(i);
            }
        }
        for &i in finished.iter().rev() {
            active.swap_remove(i);
        }
    }
}
