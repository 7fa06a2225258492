//! Model and training configuration.
//!
//! `ModelConfig` holds the six numbers that define a GPT-2 (llm.c's names in brackets):
//! maximum sequence length [maxT], vocabulary size [V], padded vocabulary size [Vp],
//! number of layers [L], number of heads [NH] and channels [C]. The presets follow llm.c:
//! dN means N layers, N heads (25 for d48) and 64*N channels, so d12 is GPT-2 small (124M).

use std::fmt;

/// GPT-2's vocabulary: 50,000 merges + 256 bytes + `<|endoftext|>`.
pub const GPT2_VOCAB_SIZE: usize = 50257;
/// The vocabulary padded up to a multiple of 128, as llm.c does, so the LM-head matmul has nice sizes.
pub const GPT2_PADDED_VOCAB_SIZE: usize = 50304;
/// GPT-2's context length.
pub const GPT2_MAX_SEQ_LEN: usize = 1024;
/// The id of `<|endoftext|>`, which precedes every document.
pub const EOT_TOKEN: u32 = 50256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    /// maxT: the longest sequence the position embedding covers.
    pub max_seq_len: usize,
    /// V: the number of real tokens.
    pub vocab_size: usize,
    /// Vp: V rounded up; rows V..Vp of the token embedding are padding and never used.
    pub padded_vocab_size: usize,
    /// L: the number of transformer blocks.
    pub num_layers: usize,
    /// NH: attention heads per block; C must be divisible by NH.
    pub num_heads: usize,
    /// C: the width of the residual stream.
    pub channels: usize,
}

/// The named sizes `--model` accepts, as (name, L, NH, C).
pub const PRESETS: [(&str, usize, usize, usize); 6] = [
    ("tiny", 4, 4, 128),
    ("d6", 6, 6, 384),
    ("d12", 12, 12, 768),
    ("d24", 24, 16, 1024),
    ("d36", 36, 20, 1280),
    ("d48", 48, 25, 1600),
];

impl ModelConfig {
    /// A GPT-2 shaped model with GPT-2's vocabulary and context length.
    pub fn gpt2(num_layers: usize, num_heads: usize, channels: usize) -> Self {
        ModelConfig {
            max_seq_len: GPT2_MAX_SEQ_LEN,
            vocab_size: GPT2_VOCAB_SIZE,
            padded_vocab_size: GPT2_PADDED_VOCAB_SIZE,
            num_layers,
            num_heads,
            channels,
        }
    }

    /// Parses a preset name (`d12`, `tiny`, ...) or a custom size written `L<l>H<h>C<c>`
    /// (for example `L4H4C256`).
    pub fn from_name(name: &str) -> Result<Self, String> {
        if let Some(&(_, l, nh, c)) = PRESETS.iter().find(|p| p.0 == name) {
            return Ok(Self::gpt2(l, nh, c));
        }
        let custom = parse_custom(name).ok_or_else(|| {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
            format!("unknown model '{name}': expected one of {} or a custom size like L4H4C256", names.join(", "))
        })?;
        let config = Self::gpt2(custom.0, custom.1, custom.2);
        config.validate()?;
        Ok(config)
    }

    /// Checks the sizes are consistent; every file reader calls this before trusting a header.
    pub fn validate(&self) -> Result<(), String> {
        let s = self;
        if s.max_seq_len == 0 || s.vocab_size == 0 || s.num_layers == 0 || s.num_heads == 0 || s.channels == 0 {
            return Err(format!("every size must be positive, found {s}"));
        }
        if s.padded_vocab_size < s.vocab_size {
            return Err(format!(
                "padded vocab size {} is smaller than vocab size {}",
                s.padded_vocab_size, s.vocab_size
            ));
        }
        if !s.channels.is_multiple_of(s.num_heads) {
            return Err(format!("channels {} are not divisible by heads {}", s.channels, s.num_heads));
        }
        // Keep every tensor addressable and the whole model under 64 Gi parameters.
        if s.num_parameters_checked().is_none_or(|n| n > (1 << 36)) {
            return Err(format!("model {s} is too large"));
        }
        Ok(())
    }

    /// Head size C / NH.
    pub fn head_size(&self) -> usize {
        self.channels / self.num_heads
    }

    fn num_parameters_checked(&self) -> Option<usize> {
        let (vp, t, l, c) = (self.padded_vocab_size, self.max_seq_len, self.num_layers, self.channels);
        let per_layer = c.checked_mul(c)?.checked_mul(12)?.checked_add(13 * c)?;
        vp.checked_mul(c)?.checked_add(t.checked_mul(c)?)?.checked_add(l.checked_mul(per_layer)?)?.checked_add(2 * c)
    }

    /// Number of parameters including the padded vocabulary rows (the size of the flat buffer).
    pub fn num_parameters(&self) -> usize {
        self.num_parameters_checked().expect("validated config")
    }

    /// Parameters as GPT-2 counts them: real vocabulary only, LM head tied to wte (124M for d12).
    pub fn num_parameters_unpadded(&self) -> usize {
        self.num_parameters() - (self.padded_vocab_size - self.vocab_size) * self.channels
    }

    /// Training FLOPs per token: 6N for the matmuls with parameters, 6*L*T*C for attention (the
    /// estimate of the PaLM paper, appendix B, that llm.c and nanoGPT use for MFU).
    pub fn flops_per_token(&self, seq_len: usize) -> f64 {
        let n = self.num_parameters_unpadded() as f64;
        6.0 * n + 6.0 * (self.num_layers * seq_len * self.channels) as f64
    }
}

fn parse_custom(name: &str) -> Option<(usize, usize, usize)> {
    let rest = name.strip_prefix('L')?;
    let (l, rest) = rest.split_once('H')?;
    let (h, c) = rest.split_once('C')?;
    Some((l.parse().ok()?, h.parse().ok()?, c.parse().ok()?))
}

impl fmt::Display for ModelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "L={} NH={} C={} maxT={} V={} Vp={}",
            self.num_layers, self.num_heads, self.channels, self.max_seq_len, self.vocab_size, self.padded_vocab_size
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d12_is_gpt2_small_124m() {
        let c = ModelConfig::from_name("d12").unwrap();
        assert_eq!(c.num_parameters_unpadded(), 124_439_808);
        assert_eq!(c.num_parameters(), 124_475_904);
    }

    #[test]
    fn custom_sizes_parse_and_bad_names_are_explained() {
        let c = ModelConfig::from_name("L2H4C64").unwrap();
        assert_eq!((c.num_layers, c.num_heads, c.channels), (2, 4, 64));
        let err = ModelConfig::from_name("d13").unwrap_err();
        assert!(err.contains("d12"), "{err}");
        assert!(ModelConfig::from_name("L2H3C64").unwrap_err().contains("divisible"));
    }
}
