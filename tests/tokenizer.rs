//! The tokenizer against tiktoken (golden ids from `reference/tiktoken_golden.py`), round trips on
//! random mixed-script text, decoding arbitrary ids, streaming decode, and llm.c's tokenizer file.

use gpt2::tokenizer::{Tokenizer, TokenizerError};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tokenizer_golden.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// FNV-1a 64 over the ids as little-endian u32 bytes, as the fixture generator computes it.
fn fnv1a64(ids: &[u32]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for id in ids {
        for b in id.to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
    }
    h
}

#[test]
fn encode_matches_tiktoken_on_every_golden_case() {
    let tok = Tokenizer::gpt2();
    let fixture = fixture();
    let cases = fixture["cases"].as_array().unwrap();
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let expected = ids_of(&case["ids"]);
        let ours = tok.encode(text);
        if ours != expected {
            failures.push(format!("{text:?}\n  tiktoken: {expected:?}\n  ours:     {ours:?}"));
        }
        assert_eq!(tok.decode(&ours).unwrap(), text);
    }
    println!("{} of {} golden cases agree with tiktoken", cases.len() - failures.len(), cases.len());
    assert!(failures.is_empty(), "{} cases differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn encode_matches_tiktoken_on_all_of_shakespeare() {
    let tok = Tokenizer::gpt2();
    let expected = &fixture()["shakespeare"];
    let mut all = Vec::new();
    for file in expected["files"].as_array().unwrap() {
        let name = file["file"].as_str().unwrap();
        let path = format!("{}/data/shakespeare/{name}", env!("CARGO_MANIFEST_DIR"));
        let ids = tok.encode(&std::fs::read_to_string(&path).unwrap());
        assert_eq!(ids.len() as u64, file["tokens"].as_u64().unwrap(), "token count of {name}");
        all.extend(ids);
    }
    assert_eq!(all.len() as u64, expected["total_tokens"].as_u64().unwrap());
    let first = ids_of(&expected["first_ids"]);
    assert_eq!(&all[..first.len()], &first[..]);
    assert_eq!(format!("{:016x}", fnv1a64(&all)), expected["fnv1a64"].as_str().unwrap());
    println!("Shakespeare: {} tokens, same as tiktoken", all.len());
}

/// A tiny seeded random generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random text mixing scripts, white space, contractions, emoji and arbitrary code points.
fn random_text(rng: &mut Rng) -> String {
    const PALETTE: &[&str] = &[
        "a",
        "Z",
        "hello",
        " the",
        "'s",
        "'S",
        "'ll",
        "'",
        "1",
        "42",
        " ",
        "  ",
        "\t",
        "\n",
        "\r\n",
        "\u{a0}",
        "\u{3000}",
        "\u{2028}",
        ".",
        "!?",
        "<|endoftext|>",
        "é",
        "e\u{301}",
        "ß",
        "日本",
        "語",
        "한",
        "नमस्ते",
        "्",
        "สวัสดี",
        "ั",
        "مرحبا",
        "١٢",
        "٣",
        "Ⅻ",
        "½",
        "👋🏽",
        "👨\u{200d}👩\u{200d}👧",
        "🇺🇸",
        "1\u{fe0f}\u{20e3}",
        "\u{200d}",
        "\u{0}",
        "\u{7f}",
        "\u{10ffff}",
        "𝐀",
    ];
    let len = rng.below(30);
    let mut s = String::new();
    for _ in 0..len {
        if rng.below(5) == 0 {
            // Any Unicode scalar value (surrogates are skipped by from_u32).
            if let Some(c) = char::from_u32(rng.below(0x110000) as u32) {
                s.push(c);
            }
        } else {
            s.push_str(PALETTE[rng.below(PALETTE.len())]);
        }
    }
    s
}

#[test]
fn decode_of_encode_gives_back_random_mixed_script_text() {
    let tok = Tokenizer::gpt2();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for _ in 0..3000 {
        let text = random_text(&mut rng);
        let ids = tok.encode(&text);
        assert!(ids.iter().all(|&id| id < tok.eot_token()), "encode never makes <|endoftext|>: {text:?}");
        assert_eq!(tok.decode(&ids).unwrap(), text);
    }
}

#[test]
fn decode_of_random_ids_never_panics_and_rejects_out_of_range_ids() {
    let tok = Tokenizer::gpt2();
    let v = tok.vocab_size() as u32;
    let mut rng = Rng(42);
    for _ in 0..2000 {
        let n = rng.below(20);
        // Mostly valid ids, some just past the end, some huge.
        let ids: Vec<u32> = (0..n)
            .map(|_| match rng.below(20) {
                0 => v + rng.below(100) as u32,
                1 => u32::MAX,
                _ => rng.below(v as usize) as u32,
            })
            .collect();
        match ids.iter().position(|&id| id >= v) {
            None => {
                let bytes = tok.decode_bytes(&ids).unwrap();
                assert_eq!(tok.decode(&ids).unwrap(), String::from_utf8_lossy(&bytes));
            }
            Some(bad) => match tok.decode(&ids) {
                Err(TokenizerError::IdOutOfRange { id, position, .. }) => {
                    assert_eq!((id, position), (ids[bad], bad));
                }
                other => panic!("expected an out-of-range error, got {other:?}"),
            },
        }
    }
    let err = tok.decode(&[15496, 50257]).unwrap_err().to_string();
    assert!(err.contains("50257") && err.contains("position 1"), "{err}");
}

#[test]
fn stream_decoder_yields_the_same_text_as_decode() {
    let tok = Tokenizer::gpt2();
    let mut rng = Rng(7);
    for round in 0..1000 {
        let ids: Vec<u32> = if round % 2 == 0 {
            tok.encode(&random_text(&mut rng))
        } else {
            // Random ids: lots of lone UTF-8 fragments.
            (0..rng.below(12)).map(|_| rng.below(50257) as u32).collect()
        };
        let mut stream = tok.stream_decoder();
        let mut text = String::new();
        for &id in &ids {
            text.push_str(&stream.push(id).unwrap());
        }
        text.push_str(&stream.finish());
        assert_eq!(text, tok.decode(&ids).unwrap(), "ids {ids:?}");
    }
}

#[test]
fn stream_decoder_holds_back_a_split_character_until_it_is_complete() {
    let tok = Tokenizer::gpt2();
    // "🦀" is 4 bytes; GPT-2 encodes it as several byte tokens.
    let ids = tok.encode("🦀");
    assert!(ids.len() > 1);
    let mut stream = tok.stream_decoder();
    let pieces: Vec<String> = ids.iter().map(|&id| stream.push(id).unwrap()).collect();
    assert!(pieces[..pieces.len() - 1].iter().all(String::is_empty), "{pieces:?}");
    assert_eq!(pieces.last().unwrap(), "🦀");
    assert!(stream.push(60000).is_err());
}

#[test]
fn llmc_tokenizer_file_has_the_header_and_every_token() {
    let tok = Tokenizer::gpt2();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.bin");
    tok.write_llmc_tokenizer(&path).unwrap();
    let data = std::fs::read(&path).unwrap();
    let header: Vec<i32> = data[..1024].chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(&header[..4], &[20240328, 2, 50257, 50256]);
    assert!(header[4..].iter().all(|&h| h == 0));
    let mut pos = 1024;
    for id in 0..50257u32 {
        let len = data[pos] as usize;
        assert_eq!(&data[pos + 1..pos + 1 + len], tok.token_bytes(id).unwrap(), "token {id}");
        pos += 1 + len;
    }
    assert_eq!(pos, data.len());
    assert_eq!(tok.token_bytes(50256).unwrap(), b"<|endoftext|>");
}

#[test]
fn from_files_loads_the_shipped_files_and_names_the_file_of_a_bad_one() {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/data/gpt2");
    let enc = std::path::Path::new(data).join("encoder.json");
    let bpe = std::path::Path::new(data).join("vocab.bpe");
    let tok = Tokenizer::from_files(&enc, &bpe).unwrap();
    assert_eq!(tok.encode("Hello world"), [15496, 995]);

    let dir = tempfile::tempdir().unwrap();
    let bad_json = dir.path().join("bad.json");
    std::fs::write(&bad_json, "{\"a\": 0,").unwrap();
    let err = Tokenizer::from_files(&bad_json, &bpe).err().unwrap().to_string();
    assert!(err.contains("bad.json"), "{err}");

    let bad_bpe = dir.path().join("bad.bpe");
    std::fs::write(&bad_bpe, "#version: 0.2\nĠ t\nnospace\n").unwrap();
    let err = Tokenizer::from_files(&enc, &bad_bpe).err().unwrap().to_string();
    assert!(err.contains("bad.bpe:3"), "{err}");

    let missing = dir.path().join("missing.json");
    let err = Tokenizer::from_files(&missing, &bpe).err().unwrap().to_string();
    assert!(err.contains("missing.json"), "{err}");
}

/// The code points of a one-class regex (`\p{L}`, ...) as the regex crate, and so tiktoken, sees them.
fn regex_class(pattern: &str) -> Vec<(u32, u32)> {
    use regex_syntax::hir::{Class, HirKind};
    let hir = regex_syntax::Parser::new().parse(pattern).unwrap();
    match hir.kind() {
        HirKind::Class(Class::Unicode(c)) => c.ranges().iter().map(|r| (r.start() as u32, r.end() as u32)).collect(),
        other => panic!("{pattern} parsed to {other:?}"),
    }
}

/// Our generated tables (scripts/gen_unicode_tables.py, Unicode 16.0.0) against regex-syntax, the
/// parser of the regex engine inside tiktoken. If this fails after a regex-syntax update, that crate
/// moved to a newer Unicode: regenerate the tables only if tiktoken's engine moved too.
#[test]
fn unicode_tables_agree_with_the_regex_engine_for_every_code_point() {
    use gpt2::tokenizer::{char_class, CharClass};
    let classes = [(CharClass::Letter, r"\p{L}"), (CharClass::Number, r"\p{N}"), (CharClass::Space, r"\s")];
    let mut expected = vec![CharClass::Other; 0x110000];
    for (class, pattern) in classes {
        for (first, last) in regex_class(pattern) {
            for cp in first..=last {
                assert_eq!(expected[cp as usize], CharClass::Other, "U+{cp:04X} in two classes");
                expected[cp as usize] = class;
            }
        }
    }
    let mut checked = 0;
    for cp in 0..0x110000u32 {
        if let Some(c) = char::from_u32(cp) {
            assert_eq!(char_class(c), expected[cp as usize], "U+{cp:04X}");
            checked += 1;
        }
    }
    println!("{checked} code points: same class as regex-syntax (Unicode 16.0.0)");
}

#[test]
fn encoding_in_parallel_chunks_gives_the_same_ids_as_encoding_whole() {
    use gpt2::tokenizer::split_for_parallel;
    let tok = Tokenizer::gpt2();
    let hamlet = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/shakespeare/hamlet_gut.txt"));
    let hamlet = hamlet.unwrap();
    let whole = tok.encode(&hamlet);
    let chunks = split_for_parallel(&hamlet, 1000);
    assert!(chunks.len() > 100);
    assert_eq!(chunks.concat(), hamlet);
    let joined: Vec<u32> = chunks.iter().flat_map(|c| tok.encode(c)).collect();
    assert_eq!(joined, whole);
    assert_eq!(tok.encode_parallel(&hamlet), whole);

    // Random text with plenty of newlines next to every kind of character.
    let mut rng = Rng(99);
    for _ in 0..300 {
        let text: String =
            (0..20).map(|_| random_text(&mut rng) + ["\n", "x\n", "\ny", ".\n."][rng.below(4)]).collect();
        let joined: Vec<u32> = split_for_parallel(&text, 10).iter().flat_map(|c| tok.encode(c)).collect();
        assert_eq!(joined, tok.encode(&text), "{text:?}");
    }
}
