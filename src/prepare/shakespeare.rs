//! The default training text: the Shakespeare plays shipped in `data/shakespeare`, embedded in the
//! binary and prepared once into a cache directory for `train` run without data flags.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{lock_dir, prepare_locked, Input, Options};
use crate::tokenizer::Tokenizer;

/// The shipped Shakespeare text (data/shakespeare, embedded in the binary): (file name, text), one
/// document each, in file-name order.
pub const SHAKESPEARE: [(&str, &str); 42] = [
    ("alls_well_that_ends_well_gut.txt", include_str!("../../data/shakespeare/alls_well_that_ends_well_gut.txt")),
    ("antony_and_cleopatra_gut.txt", include_str!("../../data/shakespeare/antony_and_cleopatra_gut.txt")),
    ("as_you_like_it_gut.txt", include_str!("../../data/shakespeare/as_you_like_it_gut.txt")),
    ("comedy_of_errors_gut.txt", include_str!("../../data/shakespeare/comedy_of_errors_gut.txt")),
    ("coriolanus_gut.txt", include_str!("../../data/shakespeare/coriolanus_gut.txt")),
    ("cymbeline_gut.txt", include_str!("../../data/shakespeare/cymbeline_gut.txt")),
    ("hamlet_gut.txt", include_str!("../../data/shakespeare/hamlet_gut.txt")),
    ("henry_iv_part_1_gut.txt", include_str!("../../data/shakespeare/henry_iv_part_1_gut.txt")),
    ("henry_iv_part_2_gut.txt", include_str!("../../data/shakespeare/henry_iv_part_2_gut.txt")),
    ("henry_v_gut.txt", include_str!("../../data/shakespeare/henry_v_gut.txt")),
    ("henry_vi_part_1_gut.txt", include_str!("../../data/shakespeare/henry_vi_part_1_gut.txt")),
    ("henry_vi_part_2_gut.txt", include_str!("../../data/shakespeare/henry_vi_part_2_gut.txt")),
    ("henry_vi_part_3_gut.txt", include_str!("../../data/shakespeare/henry_vi_part_3_gut.txt")),
    ("henry_viii_gut.txt", include_str!("../../data/shakespeare/henry_viii_gut.txt")),
    ("john_gut.txt", include_str!("../../data/shakespeare/john_gut.txt")),
    ("julius_caesar_gut.txt", include_str!("../../data/shakespeare/julius_caesar_gut.txt")),
    ("lear_gut.txt", include_str!("../../data/shakespeare/lear_gut.txt")),
    ("lovers_complaint_gut.txt", include_str!("../../data/shakespeare/lovers_complaint_gut.txt")),
    ("loves_labours_lost_gut.txt", include_str!("../../data/shakespeare/loves_labours_lost_gut.txt")),
    ("macbeth_gut.txt", include_str!("../../data/shakespeare/macbeth_gut.txt")),
    ("measure_for_measure_gut.txt", include_str!("../../data/shakespeare/measure_for_measure_gut.txt")),
    ("merchant_of_venice_gut.txt", include_str!("../../data/shakespeare/merchant_of_venice_gut.txt")),
    ("merry_wives_of_windsor_gut.txt", include_str!("../../data/shakespeare/merry_wives_of_windsor_gut.txt")),
    ("midsummer_nights_dream_gut.txt", include_str!("../../data/shakespeare/midsummer_nights_dream_gut.txt")),
    ("much_ado_about_nothing_gut.txt", include_str!("../../data/shakespeare/much_ado_about_nothing_gut.txt")),
    ("othello_gut.txt", include_str!("../../data/shakespeare/othello_gut.txt")),
    ("passionate_pilgrim_gut.txt", include_str!("../../data/shakespeare/passionate_pilgrim_gut.txt")),
    ("pericles_gut.txt", include_str!("../../data/shakespeare/pericles_gut.txt")),
    ("phoenix_and_the_turtle_gut.txt", include_str!("../../data/shakespeare/phoenix_and_the_turtle_gut.txt")),
    ("rape_of_lucrece_gut.txt", include_str!("../../data/shakespeare/rape_of_lucrece_gut.txt")),
    ("richard_ii_gut.txt", include_str!("../../data/shakespeare/richard_ii_gut.txt")),
    ("richard_iii_gut.txt", include_str!("../../data/shakespeare/richard_iii_gut.txt")),
    ("romeo_and_juliet_gut.txt", include_str!("../../data/shakespeare/romeo_and_juliet_gut.txt")),
    ("sonnets_gut.txt", include_str!("../../data/shakespeare/sonnets_gut.txt")),
    ("taming_of_the_shrew_gut.txt", include_str!("../../data/shakespeare/taming_of_the_shrew_gut.txt")),
    ("tempest_gut.txt", include_str!("../../data/shakespeare/tempest_gut.txt")),
    ("timon_of_athens_gut.txt", include_str!("../../data/shakespeare/timon_of_athens_gut.txt")),
    ("tragedy_of_titus_andronicus_gut.txt", include_str!("../../data/shakespeare/tragedy_of_titus_andronicus_gut.txt")),
    ("troilus_and_cressida_gut.txt", include_str!("../../data/shakespeare/troilus_and_cressida_gut.txt")),
    ("twelfth_night_gut.txt", include_str!("../../data/shakespeare/twelfth_night_gut.txt")),
    ("two_gentlemen_of_verona_gut.txt", include_str!("../../data/shakespeare/two_gentlemen_of_verona_gut.txt")),
    ("winters_tale_gut.txt", include_str!("../../data/shakespeare/winters_tale_gut.txt")),
];

/// Tokens of the default validation shard: the first 65,536 tokens of the Shakespeare text
/// ("All's Well That Ends Well" and the start of "Antony and Cleopatra"), 128 batches of B=8, T=64.
pub const DEFAULT_VAL_TOKENS: usize = 65_536;

/// Written last into the cache directory; its contents describe the shards, so a cache from an
/// interrupted run or an older version is prepared again.
const CACHE_MARKER: &str = "READY";

/// The shipped Shakespeare text as token shards, for `train` run without data flags: returns
/// (train glob, val glob). On first use it prepares the shards into the cache directory
/// (`$GPT2_CACHE_DIR` if set, else `cache/shakespeare` in the current directory) and prints one line
/// naming it; later calls find the shards there and return at once.
pub fn default_training_data() -> anyhow::Result<(String, String)> {
    default_training_data_with(None)
}

/// `default_training_data` encoded with `tokenizer` (None: GPT-2's). Another tokenizer's shards go to
/// a cache directory of their own, named after its digest (`cache/shakespeare-tok<digest>`).
pub fn default_training_data_with(tokenizer: Option<&Tokenizer>) -> anyhow::Result<(String, String)> {
    let dir = std::env::var_os("GPT2_CACHE_DIR").map_or_else(|| PathBuf::from("cache/shakespeare"), PathBuf::from);
    match tokenizer {
        None => default_training_data_in(&dir),
        Some(tok) => {
            let mut name = dir.file_name().unwrap_or_default().to_os_string();
            name.push(format!("-tok{}", tok.digest()));
            default_training_data_in_with(&dir.with_file_name(name), Some(tok))
        }
    }
}

/// `default_training_data` with the cache directory given.
pub fn default_training_data_in(dir: &Path) -> anyhow::Result<(String, String)> {
    default_training_data_in_with(dir, None)
}

/// `default_training_data_in` encoded with `tokenizer` (None: GPT-2's).
fn default_training_data_in_with(dir: &Path, tokenizer: Option<&Tokenizer>) -> anyhow::Result<(String, String)> {
    let key = cache_key(tokenizer);
    let globs = (dir.join("train_*.bin").display().to_string(), dir.join("val_*.bin").display().to_string());
    let marker = dir.join(CACHE_MARKER);
    let cached = || std::fs::read_to_string(&marker).is_ok_and(|contents| cache_is_valid(dir, &contents, &key));
    if cached() {
        return Ok(globs);
    }
    // Two runs may start at once on an empty cache: the second waits for the first, then finds its shards.
    let lock = lock_dir(dir, true)?;
    if cached() {
        return Ok(globs);
    }
    // The marker goes first and comes back last, once `prepare` has moved every shard into place: an
    // interrupted run leaves no marker, and the next call prepares again.
    match std::fs::remove_file(&marker) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("{}: cannot remove", marker.display()));
        }
        _ => {}
    }
    let inputs: Vec<Input> = SHAKESPEARE.iter().map(|&(name, text)| Input::Embedded(name, text)).collect();
    let options = Options {
        val_tokens: DEFAULT_VAL_TOKENS,
        shard_tokens: 100_000_000,
        progress: false,
        tokenizer: tokenizer.cloned(),
    };
    let summary = prepare_locked(&inputs, dir, &options, &lock)?;
    let mut contents = format!("{key}\n");
    for file in &summary.files {
        let size = std::fs::metadata(file).with_context(|| format!("{}: cannot read back", file.display()))?.len();
        let name = file.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        contents.push_str(&format!("{name} {size}\n"));
    }
    crate::files::write_atomic_io(&marker, |w| w.write_all(contents.as_bytes()))
        .with_context(|| format!("{}: cannot write", marker.display()))?;
    println!(
        "prepared the default training text (Shakespeare, {} documents, {} tokens) in {}",
        summary.documents,
        summary.tokens,
        dir.display()
    );
    Ok(globs)
}

/// What the cache was made from: the text's size, the split and the tokenizer (GPT-2's keeps the key
/// it always had). A change to any remakes it.
fn cache_key(tokenizer: Option<&Tokenizer>) -> String {
    let bytes: usize = SHAKESPEARE.iter().map(|(_, text)| text.len()).sum();
    let tok = tokenizer.map_or(String::new(), |t| format!(", tokenizer {}", t.digest()));
    format!(
        "gpt2 shakespeare cache v1: {} files, {bytes} bytes, val {DEFAULT_VAL_TOKENS} tokens{tok}",
        SHAKESPEARE.len()
    )
}

/// The marker matches `cache_key` and every file it lists is there with its size.
fn cache_is_valid(dir: &Path, marker: &str, key: &str) -> bool {
    let mut lines = marker.lines();
    if lines.next() != Some(key) {
        return false;
    }
    lines.all(|line| match line.split_once(' ') {
        Some((name, size)) => std::fs::metadata(dir.join(name)).is_ok_and(|m| size.parse() == Ok(m.len())),
        None => false,
    })
}
