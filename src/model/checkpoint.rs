//! Model files. Two formats:
//!
//! * llm.c's model file (read and write version 3, fp32; read version 5, bf16): a 256-int header
//!   `[20240326, version, maxT, V, L, NH, C, Vp, 0...]` then the 16 parameter tensors in order.
//! * Our training checkpoint: the same parameters plus AdamW's two moments and where training was
//!   (step, data position, RNG state), so a resumed run continues bit for bit. Header
//!   `[20261127, 1, maxT, V, L, NH, C, Vp, step (2 ints), epoch, shard, batch, rng (2 ints), B, T,
//!   total batch (2 ints), seed (2 ints), shuffle, checksum, tokenizer digest, 0...]`,
//!   then params, m, v as f32. The checksum (header[22], since version 2) is the CRC-32C of the
//!   whole file with that entry set to 0, so a bit flipped anywhere after the write is caught on load:
//!   "corrupted: checksum mismatch". `GPT2_IGNORE_CHECKSUM=1` loads such a file anyway, for forensics.
//!   Version 1 checkpoints (no checksum) still load, unverified, with a note.
//!
//! The tokenizer a model was trained with is recorded as its digest (`Tokenizer::digest`) in a spare
//! header entry: `[23]` of a checkpoint, `[8]` of an llm.c model file (llm.c reads neither). 0, as in
//! every file written before (and every llm.c file), means GPT-2's tokenizer, so those files read
//! as they always did; `check_tokenizer` turns a mismatch into a clear error.
//!
//! Every write is atomic (`files::write_atomic`).

use crate::config::ModelConfig;
use crate::files::{header_bytes, read_file, read_header, write_atomic, write_f32s, FileError, HEADER_BYTES};
use byteorder::{ByteOrder, LittleEndian};
use std::path::Path;

pub const LLMC_MODEL_MAGIC: i32 = 20240326;
pub const CHECKPOINT_MAGIC: i32 = 20261127;
/// Version 2 added the checksum; version 1 files (without one) still load.
pub const CHECKPOINT_VERSION: i32 = 2;
/// The header entry holding the checksum: the CRC-32C of the file with this entry set to 0.
pub const CHECKSUM_INDEX: usize = 22;
/// The header entry of a checkpoint holding the tokenizer digest (0: GPT-2's).
pub const TOKENIZER_INDEX: usize = 23;
/// The header entry of an llm.c model file holding the tokenizer digest (0: GPT-2's).
pub const LLMC_TOKENIZER_INDEX: usize = 8;
/// Set this environment variable to 1 to load a checkpoint whose checksum does not match.
pub const IGNORE_CHECKSUM_ENV: &str = "GPT2_IGNORE_CHECKSUM";

/// Where training stands, saved with the checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrainState {
    /// The number of optimizer steps done.
    pub step: u64,
    /// The data loader's position: epoch, shard index, batch index within the shard.
    pub epoch: u32,
    pub shard: u32,
    pub batch: u32,
    /// The RNG's state.
    pub rng: u64,
    /// The batch shape training ran with (the data position counts batches of this shape).
    pub b: u32,
    pub t: u32,
    /// Tokens per optimizer step, and the shuffle settings that give the data position its meaning.
    pub total_batch: u64,
    pub seed: u64,
    pub shuffle: bool,
}

/// What a model file holds.
pub struct Checkpoint {
    pub config: ModelConfig,
    pub params: Vec<f32>,
    /// AdamW moments and the training position: only in our checkpoints, not in llm.c model files.
    pub optimizer: Option<(Vec<f32>, Vec<f32>, TrainState)>,
    /// The digest of the tokenizer the model was trained with; 0: not recorded, GPT-2's.
    pub tokenizer_digest: i32,
}

impl Checkpoint {
    /// Checks that `tokenizer` is the one this model was trained with (GPT-2's when the file records
    /// none); `path` names the model in the error.
    pub fn check_tokenizer(&self, path: &Path, tokenizer: &crate::tokenizer::Tokenizer) -> Result<(), FileError> {
        let gpt2 = crate::tokenizer::gpt2_digest;
        let (expected, which) = match self.tokenizer_digest {
            0 => (gpt2(), "GPT-2's tokenizer (the file records no other)".to_string()),
            d => (d, format!("a tokenizer with digest {d}")),
        };
        let given = tokenizer.digest();
        if given != expected {
            let given_name = if given == gpt2() { "GPT-2's".to_string() } else { format!("digest {given}") };
            return Err(FileError::new(
                path,
                format!(
                    "the model was trained with {which}, but the tokenizer given is {given_name}: pass the \
                     --tokenizer DIR it was trained with"
                ),
            ));
        }
        Ok(())
    }
}

fn config_from_header(path: &Path, h: &[i32]) -> Result<ModelConfig, FileError> {
    let field = |i: usize, name: &str| -> Result<usize, FileError> {
        usize::try_from(h[i])
            .map_err(|_| FileError::new(path, format!("header says {name} = {}, expected a positive number", h[i])))
    };
    let config = ModelConfig {
        max_seq_len: field(2, "maxT")?,
        vocab_size: field(3, "V")?,
        num_layers: field(4, "L")?,
        num_heads: field(5, "NH")?,
        channels: field(6, "C")?,
        padded_vocab_size: field(7, "Vp")?,
    };
    config.validate().map_err(|e| FileError::new(path, format!("header describes an invalid model: {e}")))?;
    Ok(config)
}

fn config_header(magic: i32, version: i32, c: &ModelConfig) -> Vec<i32> {
    let n = |x: usize| x as i32;
    vec![
        magic,
        version,
        n(c.max_seq_len),
        n(c.vocab_size),
        n(c.num_layers),
        n(c.num_heads),
        n(c.channels),
        n(c.padded_vocab_size),
    ]
}

/// Checks that `bytes` holds exactly the header plus `count` values of `width` bytes.
fn expect_size(path: &Path, bytes: &[u8], count: usize, width: usize, what: &str) -> Result<(), FileError> {
    let expected = HEADER_BYTES + count * width;
    if bytes.len() != expected {
        let how = if bytes.len() < expected { "truncated" } else { "too long" };
        return Err(FileError::new(
            path,
            format!(
                "{how}: {what} needs {expected} bytes (header + {count} values of {width} bytes), file has {}",
                bytes.len()
            ),
        ));
    }
    Ok(())
}

/// Reads an llm.c model file (version 3 fp32 or 5 bf16) or one of our checkpoints, verifying a
/// checkpoint's checksum unless the environment variable `GPT2_IGNORE_CHECKSUM` is 1.
pub fn load(path: &Path) -> Result<Checkpoint, FileError> {
    let ignore_checksum = std::env::var(IGNORE_CHECKSUM_ENV).is_ok_and(|v| v == "1");
    load_with(path, ignore_checksum)
}

/// `load`, saying whether a checkpoint whose checksum does not match is loaded anyway (with a warning
/// on stderr) instead of refused.
pub fn load_with(path: &Path, ignore_checksum: bool) -> Result<Checkpoint, FileError> {
    let bytes = read_file(path)?;
    parse(path, &bytes, ignore_checksum)
}

/// The CRC-32C of a checkpoint's header (with the checksum entry as 0) and everything after it.
fn checksum_of_file(bytes: &[u8]) -> u32 {
    let mut header = bytes[..HEADER_BYTES].to_vec();
    header[4 * CHECKSUM_INDEX..4 * CHECKSUM_INDEX + 4].fill(0);
    crc32c::crc32c_append(crc32c::crc32c(&header), &bytes[HEADER_BYTES..])
}

/// Checks a version 2 checkpoint's checksum; a mismatch is an error, or with `ignore_checksum` a warning.
fn verify_checksum(path: &Path, bytes: &[u8], h: &[i32], ignore_checksum: bool) -> Result<(), FileError> {
    let stored = h[CHECKSUM_INDEX] as u32;
    let actual = checksum_of_file(bytes);
    if stored == actual {
        return Ok(());
    }
    let what = format!(
        "corrupted: checksum mismatch (the header says CRC-32C {stored:#010x}, the file's {} bytes give \
         {actual:#010x}): it changed after it was written",
        bytes.len()
    );
    if !ignore_checksum {
        return Err(FileError::new(path, format!("{what}; set {IGNORE_CHECKSUM_ENV}=1 to load it anyway")));
    }
    eprintln!("warning: {}: {what}; loading it anyway ({IGNORE_CHECKSUM_ENV}=1)", path.display());
    Ok(())
}

/// The parameters of an llm.c model file of `version` (3: fp32, 5: bf16) holding `n` of them.
fn llmc_params(path: &Path, bytes: &[u8], version: i32, n: usize) -> Result<Vec<f32>, FileError> {
    let body = &bytes[HEADER_BYTES..];
    let params = match version {
        3 => {
            expect_size(path, bytes, n, 4, "an fp32 model")?;
            let mut params = vec![0.0f32; n];
            LittleEndian::read_f32_into(body, &mut params);
            params
        }
        5 => {
            expect_size(path, bytes, n, 2, "a bf16 model")?;
            // bf16 is the top half of an f32: shift it back into place
            body.chunks_exact(2).map(|b| f32::from_bits((LittleEndian::read_u16(b) as u32) << 16)).collect()
        }
        v => {
            return Err(FileError::new(
                path,
                format!("unsupported llm.c model version {v}: expected 3 (fp32) or 5 (bf16)"),
            ))
        }
    };
    Ok(params)
}

/// Checks a checkpoint's version, and its checksum where the version has one.
fn check_version(path: &Path, bytes: &[u8], h: &[i32], ignore_checksum: bool) -> Result<(), FileError> {
    match h[1] {
        CHECKPOINT_VERSION => verify_checksum(path, bytes, h, ignore_checksum)?,
        // version 1 wrote 0 where version 2 keeps the checksum: a 1 there with a checksum is a version 2
        // file whose version number was damaged, not an old file to load unverified
        1 if h[CHECKSUM_INDEX] != 0 && !ignore_checksum => {
            return Err(FileError::new(
                path,
                format!(
                    "corrupted: the header says version 1 (no checksum) but holds a checksum, as version \
                     {CHECKPOINT_VERSION} does: the version number was damaged; set {IGNORE_CHECKSUM_ENV}=1 to \
                     load it anyway"
                ),
            ))
        }
        1 => eprintln!(
            "note: {}: a version 1 checkpoint, which has no checksum: loading it unverified (the next save \
             writes version {CHECKPOINT_VERSION}, with one)",
            path.display()
        ),
        v => {
            return Err(FileError::new(
                path,
                format!("unsupported checkpoint version {v}: expected {CHECKPOINT_VERSION} (or 1, without a checksum)"),
            ))
        }
    }
    Ok(())
}

/// Parses the bytes of a model file or checkpoint (`load` without the reading); `path` names it in errors.
pub fn parse(path: &Path, bytes: &[u8], ignore_checksum: bool) -> Result<Checkpoint, FileError> {
    let h = read_header(path, bytes)?;
    let config = match h[0] {
        LLMC_MODEL_MAGIC | CHECKPOINT_MAGIC => config_from_header(path, &h)?,
        other => {
            return Err(FileError::new(
                path,
                format!("bad magic number {other}: expected {LLMC_MODEL_MAGIC} (llm.c model) or {CHECKPOINT_MAGIC} (our checkpoint)"),
            ))
        }
    };
    let n = config.num_parameters();
    let body = &bytes[HEADER_BYTES..];
    if h[0] == LLMC_MODEL_MAGIC {
        let params = llmc_params(path, bytes, h[1], n)?;
        return Ok(Checkpoint { config, params, optimizer: None, tokenizer_digest: h[LLMC_TOKENIZER_INDEX] });
    }
    check_version(path, bytes, &h, ignore_checksum)?;
    expect_size(path, bytes, 3 * n, 4, "a checkpoint (params, m, v)")?;
    let u64_at = |i: usize| (h[i] as u32 as u64) | ((h[i + 1] as u32 as u64) << 32);
    let state = TrainState {
        step: u64_at(8),
        epoch: h[10] as u32,
        shard: h[11] as u32,
        batch: h[12] as u32,
        rng: u64_at(13),
        b: h[15] as u32,
        t: h[16] as u32,
        total_batch: u64_at(17),
        seed: u64_at(19),
        shuffle: h[21] != 0,
    };
    if state.b == 0 || state.t == 0 || state.t as usize > config.max_seq_len || h[15] < 0 || h[16] < 0 {
        return Err(FileError::new(path, format!("header holds an invalid batch shape B={} T={}", h[15], h[16])));
    }
    let section = |i: usize| {
        let mut values = vec![0.0f32; n];
        LittleEndian::read_f32_into(&body[4 * n * i..4 * n * (i + 1)], &mut values);
        values
    };
    Ok(Checkpoint {
        config,
        params: section(0),
        optimizer: Some((section(1), section(2), state)),
        tokenizer_digest: h[TOKENIZER_INDEX],
    })
}

/// Writes an llm.c version 3 (fp32) model file that llm.c and this project both read.
pub fn save_llmc(path: &Path, config: &ModelConfig, params: &[f32]) -> Result<(), FileError> {
    save_llmc_with_tokenizer(path, config, params, 0)
}

/// `save_llmc`, recording the digest of the tokenizer the model was trained with (0: GPT-2's).
pub fn save_llmc_with_tokenizer(
    path: &Path,
    config: &ModelConfig,
    params: &[f32],
    tokenizer_digest: i32,
) -> Result<(), FileError> {
    assert_eq!(params.len(), config.num_parameters());
    let mut h = config_header(LLMC_MODEL_MAGIC, 3, config);
    h.push(tokenizer_digest);
    assert_eq!(h.len(), LLMC_TOKENIZER_INDEX + 1);
    let header = header_bytes(&h);
    write_atomic(path, |w| {
        w.write_all(&header)?;
        write_f32s(w, params)
    })
}

/// Writes our checkpoint: parameters, AdamW moments and the training state.
pub fn save_checkpoint(
    path: &Path,
    config: &ModelConfig,
    params: &[f32],
    m: &[f32],
    v: &[f32],
    state: &TrainState,
) -> Result<(), FileError> {
    save_checkpoint_with_tokenizer(path, config, params, m, v, state, 0)
}

/// `save_checkpoint`, recording the digest of the tokenizer the model is trained with (0: GPT-2's,
/// which writes exactly the bytes `save_checkpoint` always wrote).
pub fn save_checkpoint_with_tokenizer(
    path: &Path,
    config: &ModelConfig,
    params: &[f32],
    m: &[f32],
    v: &[f32],
    state: &TrainState,
    tokenizer_digest: i32,
) -> Result<(), FileError> {
    let n = config.num_parameters();
    assert!(params.len() == n && m.len() == n && v.len() == n);
    let mut h = config_header(CHECKPOINT_MAGIC, CHECKPOINT_VERSION, config);
    let split = |x: u64| [x as u32 as i32, (x >> 32) as u32 as i32];
    h.extend(split(state.step));
    h.extend([state.epoch as i32, state.shard as i32, state.batch as i32]);
    h.extend(split(state.rng));
    h.extend([state.b as i32, state.t as i32]);
    h.extend(split(state.total_batch));
    h.extend(split(state.seed));
    h.push(state.shuffle as i32);
    assert_eq!(h.len(), CHECKSUM_INDEX);
    h.push(0); // the checksum's place
    h.push(tokenizer_digest);
    assert_eq!(h.len(), TOKENIZER_INDEX + 1);
    // the checksum covers the header with its own entry still 0, then the three tensors
    let mut crc = crc32c::crc32c(&header_bytes(&h));
    for values in [params, m, v] {
        crc = crc32c_f32s(crc, values);
    }
    h[CHECKSUM_INDEX] = crc as i32;
    let header = header_bytes(&h);
    write_atomic(path, |w| {
        w.write_all(&header)?;
        write_f32s(w, params)?;
        write_f32s(w, m)?;
        write_f32s(w, v)
    })
}

/// Extends a CRC-32C with f32s as the little-endian bytes they are written as.
fn crc32c_f32s(mut crc: u32, values: &[f32]) -> u32 {
    let mut buf = vec![0u8; 4 * 16384];
    for chunk in values.chunks(16384) {
        let bytes = &mut buf[..4 * chunk.len()];
        LittleEndian::write_f32_into(chunk, bytes);
        crc = crc32c::crc32c_append(crc, bytes);
    }
    crc
}
