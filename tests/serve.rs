//! `serve`: the batched forward pass against `Sampler`, then the HTTP API end to end: a server
//! started in-process on a free port, spoken to over plain TCP with a small HTTP/1.1 client.

use gpt2::config::ModelConfig;
use gpt2::cpu::decode::{Decoder, KvCache};
use gpt2::model::checkpoint;
use gpt2::model::init::gpt2_init;
use gpt2::rng::Rng;
use gpt2::sample::{generate, Sampler};
use gpt2::serve::batcher::EngineOptions;
use gpt2::serve::{AppState, ServeOptions, Server};
use gpt2::tokenizer::Tokenizer;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

#[test]
fn batched_forward_gives_each_sequence_the_logits_of_its_own_sampler() {
    let cfg = ModelConfig {
        max_seq_len: 24,
        vocab_size: 70,
        padded_vocab_size: 72,
        num_layers: 2,
        num_heads: 3,
        channels: 24,
    };
    let mut params = gpt2_init(&cfg, 3);
    let mut rng = Rng::new(3);
    params.iter_mut().for_each(|p| *p += 0.05 * rng.normal()); // less uniform than a fresh init
    let seqs: Vec<Vec<u32>> =
        (0..3).map(|s| (0..10 + 3 * s).map(|_| rng.below(cfg.vocab_size) as u32).collect()).collect();
    // each sequence alone, one token at a time
    let expected: Vec<Vec<Vec<f32>>> = seqs
        .iter()
        .map(|seq| {
            let mut sampler = Sampler::new(cfg, &params);
            seq.iter()
                .map(|&t| {
                    sampler.step(t);
                    sampler.logits.clone()
                })
                .collect()
        })
        .collect();
    // all three together: prompts in uneven chunks (prefill), then one token per step (decoding)
    let mut model = Decoder::new(cfg, &params);
    let mut caches: Vec<KvCache> = seqs.iter().map(|s| KvCache::new(&cfg, s.len())).collect();
    let mut fed = [0usize; 3];
    let vp = cfg.padded_vocab_size;
    let mut worst = 0.0f32;
    let mut step = 0;
    while fed.iter().zip(&seqs).any(|(f, s)| *f < s.len()) {
        let live: Vec<usize> = (0..3).filter(|&s| fed[s] < seqs[s].len()).collect();
        let lens: Vec<usize> =
            live.iter().map(|&s| (if step == 0 { 5 + s } else { 1 }).min(seqs[s].len() - fed[s])).collect();
        let inputs: Vec<&[u32]> = live.iter().zip(&lens).map(|(&s, &n)| &seqs[s][fed[s]..fed[s] + n]).collect();
        let mut refs: Vec<&mut KvCache> =
            caches.iter_mut().enumerate().filter(|(s, _)| live.contains(s)).map(|(_, c)| c).collect();
        let logits = model.forward(&mut refs, &inputs);
        for (row, (&s, &n)) in live.iter().zip(&lens).enumerate() {
            fed[s] += n;
            let want = &expected[s][fed[s] - 1];
            let got = &logits[row * vp..(row + 1) * vp];
            worst = got.iter().zip(want).fold(worst, |m, (a, b)| m.max((a - b).abs()));
        }
        step += 1;
    }
    println!("largest logit difference, batched vs one sequence at a time: {worst:.2e}");
    // the same arithmetic per row; only the matmul's blocking over rows may round differently
    assert!(worst < 1e-5, "{worst}");
}

/// A tiny GPT-2-vocabulary model written to a model file and served, plus what it needs to check answers.
struct Fixture {
    server: Server,
    config: ModelConfig,
    params: Vec<f32>,
    _dir: tempfile::TempDir,
}

fn options() -> ServeOptions {
    ServeOptions {
        engine: EngineOptions { max_batch: 8, queue: 16, prefill_tokens: 64 },
        max_body_bytes: 64 * 1024,
        max_connections: 64,
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
    }
}

fn start(options: ServeOptions) -> Fixture {
    start_model("L1H2C32", options)
}

fn start_model(name: &str, options: ServeOptions) -> Fixture {
    let config = ModelConfig::from_name(name).unwrap();
    let params = gpt2_init(&config, 42);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.bin");
    checkpoint::save_llmc(&path, &config, &params).unwrap();
    let ckpt = checkpoint::load(&path).unwrap();
    let state = AppState::new(Some(("tiny".into(), ckpt)), None, options).unwrap();
    let server = Server::start("127.0.0.1:0", state).unwrap();
    Fixture { server, config, params, _dir: dir }
}

/// One HTTP/1.1 exchange over a fresh connection: (status, headers, body with chunking undone).
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    (status, head.to_string(), body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

fn completion(addr: SocketAddr, body: Value) -> (u16, Value) {
    let (status, _, text) = http(addr, "POST", "/v1/completions", Some(&body.to_string()));
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}

/// What greedy generation gives outside the server.
fn greedy_text(f: &Fixture, prompt: &str, n: usize) -> String {
    let tok = Tokenizer::gpt2();
    let ids = generate(f.config, &f.params, &tok.encode(prompt), n, 0.0, 0, &mut Rng::new(0), |_| {});
    tok.decode(&ids).unwrap()
}

#[test]
fn greedy_completion_is_what_generate_gives_with_usage_and_finish_reason() {
    let f = start(options());
    let (status, v) = completion(
        f.server.addr,
        json!({"model": "tiny", "prompt": "Hello there", "max_tokens": 12, "temperature": 0}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], "tiny");
    assert_eq!(v["choices"][0]["text"], greedy_text(&f, "Hello there", 12));
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["prompt_tokens"], 2);
    assert_eq!(v["usage"]["completion_tokens"], 12);
    assert_eq!(v["usage"]["total_tokens"], 14);
}

#[test]
fn seeded_sampling_repeats_and_streaming_sends_the_same_text_as_events_then_done() {
    let f = start(options());
    let body = json!({"prompt": "Once upon", "max_tokens": 20, "temperature": 1.0, "top_k": 50, "seed": 7});
    let (_, a) = completion(f.server.addr, body.clone());
    let (_, b) = completion(f.server.addr, body.clone());
    assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"], "same seed, same text");
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (status, head, text) = http(f.server.addr, "POST", "/v1/completions", Some(&streamed.to_string()));
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "{head}");
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(*events.last().unwrap(), "data: [DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").expect("data: events")).unwrap())
        .collect();
    assert!(chunks.len() > 2, "text should come in pieces, got {}", chunks.len());
    let joined: String = chunks.iter().map(|c| c["choices"][0]["text"].as_str().unwrap()).collect();
    assert_eq!(joined, a["choices"][0]["text"].as_str().unwrap());
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert_eq!(last["usage"]["completion_tokens"], 20);
}

#[test]
fn a_stop_string_ends_the_text_before_it() {
    let f = start(options());
    let full = greedy_text(&f, "The", 24);
    // a stop string from the middle of what greedy decoding writes
    let chars: Vec<char> = full.chars().collect();
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 3].iter().collect();
    let expected = &full[..full.find(&stop).unwrap()];
    for stream in [false, true] {
        let body = json!({"prompt": "The", "max_tokens": 24, "temperature": 0, "stop": [stop], "stream": stream});
        let (status, _, text) = http(f.server.addr, "POST", "/v1/completions", Some(&body.to_string()));
        assert_eq!(status, 200);
        let got: String = if stream {
            text.split("\n\n")
                .filter_map(|e| e.strip_prefix("data: "))
                .filter(|d| *d != "[DONE]")
                .map(|d| serde_json::from_str::<Value>(d).unwrap()["choices"][0]["text"].as_str().unwrap().to_string())
                .collect()
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["choices"][0]["finish_reason"], "stop");
            v["choices"][0]["text"].as_str().unwrap().to_string()
        };
        assert_eq!(got, expected, "stop {stop:?}, stream {stream}");
    }
}

#[test]
fn models_healthz_and_metrics_answer() {
    let f = start(options());
    let (status, _, body) = http(f.server.addr, "GET", "/v1/models", None);
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "tiny");
    let (status, _, body) = http(f.server.addr, "GET", "/healthz", None);
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["status"], "ok");
    completion(f.server.addr, json!({"prompt": "a", "max_tokens": 3, "temperature": 0}));
    let (status, _, page) = http(f.server.addr, "GET", "/", None);
    assert_eq!(status, 200);
    assert!(page.contains("<textarea id=\"prompt\""));
    let (status, _, metrics) = http(f.server.addr, "GET", "/metrics", None);
    assert_eq!(status, 200);
    for needle in [
        "gpt2_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 1",
        "gpt2_generated_tokens_total 3",
        "gpt2_queue_depth 0",
        "gpt2_active_sequences 0",
        "gpt2_batch_size_bucket",
        "gpt2_time_to_first_token_seconds_count 1",
        "gpt2_time_per_output_token_seconds_count 2",
    ] {
        assert!(metrics.contains(needle), "no {needle:?} in\n{metrics}");
    }
}

#[test]
fn requests_are_counted_by_route_and_unknown_paths_share_one_label() {
    let f = start(options());
    for (method, path, status) in [
        ("GET", "/healthz", 200),
        ("GET", "/v1/models", 200),
        ("GET", "/training.svg", 404), // no --log: nothing to draw
        ("GET", "/v1/completions", 405),
        ("GET", "/nothing", 404),
        ("GET", "/v1/nothing/either", 404),
    ] {
        assert_eq!(http(f.server.addr, method, path, None).0, status, "{method} {path}");
    }
    let (_, _, metrics) = http(f.server.addr, "GET", "/metrics", None);
    for needle in [
        "gpt2_requests_total{endpoint=\"/healthz\",status=\"200\"} 1",
        "gpt2_requests_total{endpoint=\"/v1/models\",status=\"200\"} 1",
        "gpt2_requests_total{endpoint=\"/training.svg\",status=\"404\"} 1",
        "gpt2_requests_total{endpoint=\"/v1/completions\",status=\"405\"} 1",
        "gpt2_requests_total{endpoint=\"other\",status=\"404\"} 2",
    ] {
        assert!(metrics.contains(needle), "no {needle:?} in\n{metrics}");
    }
    assert!(!metrics.contains("/nothing"), "an unknown path got a label of its own:\n{metrics}");
}

#[test]
fn bad_requests_get_openai_errors_and_the_server_goes_on() {
    let f = start(options());
    let long_prompt = "a ".repeat(1100); // about 1100 tokens: more than the context of 1024
    let big = "x".repeat(70 * 1024); // over the 64 KiB body limit
    let cases: Vec<(String, u16, &str)> = vec![
        ("{not json".into(), 400, "not valid JSON"),
        ("[1, 2]".into(), 400, "must be a JSON object"),
        (json!({"prompt": 5}).to_string(), 400, "'prompt' must be a string"),
        (json!({"prompt": "a", "max_tokens": 0}).to_string(), 400, "at least 1"),
        (json!({"prompt": "a", "max_tokens": -3}).to_string(), 400, "'max_tokens' must be at least 1, got -3"),
        (json!({"prompt": "a", "max_tokens": 0}).to_string(), 400, "'max_tokens' must be at least 1, got 0"),
        (json!({"prompt": "a", "top_k": -1}).to_string(), 400, "'top_k' must be at least 0, got -1"),
        (json!({"prompt": "a", "max_tokens": "ten"}).to_string(), 400, "'max_tokens' must be an integer, got a string"),
        (json!({"prompt": "a", "max_tokens": 2.5}).to_string(), 400, "'max_tokens' must be an integer, got a number"),
        (json!({"prompt": "a", "max_tokens": 5000}).to_string(), 400, "room for at most 1023"),
        (json!({"prompt": long_prompt}).to_string(), 400, "context is 1024 tokens"),
        (json!({"prompt": "a", "temperature": -1}).to_string(), 400, "between 0 and 2"),
        (json!({"prompt": "a", "temperature": "hot"}).to_string(), 400, "'temperature' must be a number"),
        (json!({"prompt": "a", "stop": 3}).to_string(), 400, "'stop' must be a string or a list"),
        (json!({"prompt": "a", "stop": ["a", "b", "c", "d", "e"]}).to_string(), 400, "at most 4"),
        (json!({"prompt": "a", "stream": "yes"}).to_string(), 400, "'stream' must be a boolean"),
        (json!({"prompt": "a", "n": 2}).to_string(), 400, "'n' must be 1"),
        (json!({"prompt": "a", "seed": "x"}).to_string(), 400, "'seed' must be an integer"),
        (json!({"prompt": big}).to_string(), 413, "over the limit of 65536 bytes"),
    ];
    for (body, status, message) in &cases {
        let (got, _, text) = http(f.server.addr, "POST", "/v1/completions", Some(body));
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        let err = &v["error"];
        assert_eq!(got, *status, "{text}");
        assert!(err["message"].as_str().unwrap().contains(message), "{:?} does not say {message:?}", err["message"]);
        assert!(err["type"].is_string(), "{v}");
    }
    let (status, _, text) = http(f.server.addr, "GET", "/v1/nothing", None);
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("no such endpoint"));
    let (status, _, text) = http(f.server.addr, "GET", "/v1/completions", None);
    assert_eq!(status, 405, "{text}");
    assert!(text.contains("\"error\""));
    let (status, v) = completion(f.server.addr, json!({"prompt": "still here", "max_tokens": 4}));
    assert_eq!(status, 200, "{v}");
}

/// Opens a streamed completion and reads until its first event has arrived.
fn open_stream(addr: SocketAddr, max_tokens: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = json!({"prompt": "x", "max_tokens": max_tokens, "stream": true}).to_string();
    write!(stream, "POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("data: ") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended before its first event");
        seen.extend_from_slice(&buf[..n]);
    }
    stream
}

#[test]
fn a_full_queue_gets_503_and_a_client_that_leaves_frees_its_place() {
    let mut o = options();
    o.engine = EngineOptions { max_batch: 1, queue: 1, prefill_tokens: 64 };
    // wide enough that A's 1000 tokens take seconds, so B and C surely arrive while A runs
    let f = start_model("L2H2C256", o);
    let addr = f.server.addr;
    // A holds the only place in the batch, B waits in the queue, C finds the queue full
    let a = open_stream(addr, 1000);
    let b = std::thread::spawn(move || {
        let started = Instant::now();
        let (status, v) = completion(addr, json!({"prompt": "y", "max_tokens": 2}));
        (status, v, started.elapsed())
    });
    // wait until B is queued
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http(addr, "GET", "/metrics", None).2.contains("gpt2_queue_depth 1") {
        assert!(Instant::now() < deadline, "B never got queued");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, v) = completion(addr, json!({"prompt": "z", "max_tokens": 2}));
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "queue_full");
    // A hangs up: its place goes to B at once, long before A's 1000 tokens would have been done
    drop(a);
    let (status, v, _) = b.join().unwrap();
    assert_eq!(status, 200, "{v}");
    let metrics = http(addr, "GET", "/metrics", None).2;
    assert!(metrics.contains("gpt2_cancelled_total 1"), "{metrics}");
}

#[test]
fn concurrent_requests_share_forward_passes_and_get_the_answers_they_would_alone() {
    let f = start(options());
    let addr = f.server.addr;
    // long enough (100 tokens each) that the six overlap even on a fast machine
    let alone = greedy_text(&f, "Together", 100);
    let threads: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(move || {
                completion(addr, json!({"prompt": "Together", "max_tokens": 100, "temperature": 0}))
            })
        })
        .collect();
    for t in threads {
        let (status, v) = t.join().unwrap();
        assert_eq!(status, 200);
        assert_eq!(v["choices"][0]["text"], alone);
    }
    let metrics = http(addr, "GET", "/metrics", None).2;
    let value = |name: &str| -> f64 {
        metrics.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap()
    };
    let mean_batch = value("gpt2_batch_size_sum ") / value("gpt2_batch_size_count ");
    println!("mean sequences per forward pass with 6 concurrent requests: {mean_batch:.2}");
    assert!(mean_batch > 1.5, "requests were not batched: mean batch {mean_batch}");
}

#[test]
fn garbage_and_silent_connections_do_not_stop_the_server() {
    let f = start(options());
    let addr = f.server.addr;
    // garbage instead of HTTP
    let mut g = TcpStream::connect(addr).unwrap();
    g.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    g.write_all(b"\x00\xff\x13garbage\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = g.read_to_end(&mut out);
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer}");
    // a connection that never sends anything is closed after the header timeout (1 s here)
    let mut silent = TcpStream::connect(addr).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = silent.read(&mut buf).unwrap_or(0);
    assert!(n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"));
    assert!(started.elapsed() < Duration::from_secs(4), "the silent connection was not closed");
    // a body that never comes: 408 after the body timeout
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    slow.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"pro").unwrap();
    let mut out = Vec::new();
    let _ = slow.read_to_end(&mut out);
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 408"), "{}", String::from_utf8_lossy(&out));
    // a client that leaves mid-stream
    drop(open_stream(addr, 200));
    let (status, v) = completion(addr, json!({"prompt": "next", "max_tokens": 3}));
    assert_eq!(status, 200, "{v}");
}

#[test]
fn without_a_model_completions_say_so_and_the_training_view_serves_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    std::fs::write(
        &log,
        "{\"step\":0,\"train_loss\":10.9,\"lr\":0.0001,\"norm\":1.5,\"ms\":100,\"tok_per_s\":5000}\n{\"step\":1,\"tr",
    )
    .unwrap();
    let state = AppState::new(None, Some(log.clone()), options()).unwrap();
    let server = Server::start("127.0.0.1:0", state).unwrap();
    let (status, v) = completion(server.addr, json!({"prompt": "a"}));
    assert_eq!(status, 503);
    assert!(v["error"]["message"].as_str().unwrap().contains("no model"));
    let (status, _, body) = http(server.addr, "GET", "/v1/training/log", None);
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["records"].as_array().unwrap().len(), 1, "the half-written line is skipped");
    // the writer finishes its line and adds another: the view follows
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(b"ain_loss\":10.5}\n{\"step\":2,\"train_loss\":10.1,\"hellaswag_acc_norm\":0.26}\n").unwrap();
    let v: Value = serde_json::from_str(&http(server.addr, "GET", "/v1/training/log", None).2).unwrap();
    assert_eq!(v["records"].as_array().unwrap().len(), 3);
    assert_eq!(v["records"][2]["hellaswag_acc_norm"], 0.26);
    let (status, head, svg) = http(server.addr, "GET", "/training.svg", None);
    assert_eq!(status, 200);
    assert!(head.contains("image/svg+xml"));
    assert!(svg.contains("<svg") && svg.contains("gradient norm") && svg.contains("HellaSwag"));
}
