//! Peak FLOP/s per card, for MFU (model FLOPs utilization: the model's FLOPs per second over the
//! card's peak). The peak is that of the arithmetic the run actually does:
//!
//! | precision | `--matmul`              | the matmuls run on                        | peak          |
//! |-----------|-------------------------|-------------------------------------------|---------------|
//! | bf16      | cublas                  | tensor cores (cuBLASLt, fp32 accumulate)  | bf16 dense    |
//! | bf16      | handwritten, naive      | CUDA cores: bf16 widened, fp32 FMAs       | fp32          |
//! | fp32      | any (cuBLAS: SGEMM)     | CUDA cores (no TF32)                      | fp32          |
//!
//! Dividing a bf16 cuBLASLt run by the fp32 peak would print MFU over 100% on an H100. "Dense" is
//! without the 2:4 structured sparsity that data sheets quote first (twice the dense figure).
//!
//! A card is found by its name (the driver's, e.g. "NVIDIA H100 80GB HBM3"), its compute
//! capability and its number of SMs: a name alone does not tell an H100 SXM from an H100 NVL, nor a
//! MIG slice (fewer SMs, the peak scaled by their share) from the whole card. A card not in the
//! table gets no MFU, and the device line says why.

use super::context::Matmul;
use crate::precision::Precision;

/// One row of the table: a card and its peaks, from NVIDIA's data sheet named in `source`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Card {
    /// The card as the MFU line names it.
    pub card: &'static str,
    /// Words that must all appear in the driver's name (whole words, case-insensitive), and words
    /// that must not (to tell "H100" from "H100 NVL", "L40" from "L40S").
    pub words: &'static [&'static str],
    pub not_words: &'static [&'static str],
    pub compute_capability: (i32, i32),
    /// The SMs of the whole card.
    pub sms: u32,
    /// Dense bf16 tensor-core FLOP/s, fp32 accumulate.
    pub bf16_dense: f64,
    /// fp32 FLOP/s on the CUDA cores (no tensor cores).
    pub fp32: f64,
    pub source: &'static str,
}

const fn card(
    card: &'static str,
    words: &'static [&'static str],
    not_words: &'static [&'static str],
    compute_capability: (i32, i32),
    sms: u32,
    bf16_dense_tflops: f64,
    fp32_tflops: f64,
    source: &'static str,
) -> Card {
    Card {
        card,
        words,
        not_words,
        compute_capability,
        sms,
        bf16_dense: bf16_dense_tflops * 1e12,
        fp32: fp32_tflops * 1e12,
        source,
    }
}

/// The cards, most specific name first. TFLOP/s as the data sheets print them (bf16 dense = the
/// sheet's sparse figure / 2 where it prints only that).
#[rustfmt::skip]
pub const CARDS: [Card; 13] = [
    card("H100 NVL", &["H100", "NVL"], &[], (9, 0), 132, 835.5, 60.0, "NVIDIA H100 Tensor Core GPU datasheet (H100 NVL: BF16 1,671 TFLOPS with sparsity, FP32 60)"),
    card("H100 PCIe", &["H100", "PCIE"], &[], (9, 0), 114, 756.0, 51.0, "NVIDIA H100 Tensor Core GPU datasheet (H100 PCIe: BF16 1,513 with sparsity, FP32 51)"),
    card("H100 SXM", &["H100"], &["NVL", "PCIE"], (9, 0), 132, 989.0, 67.0, "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM: BF16 1,979 with sparsity, FP32 67)"),
    card("H200 NVL", &["H200", "NVL"], &[], (9, 0), 132, 835.5, 60.0, "NVIDIA H200 Tensor Core GPU datasheet (H200 NVL: BF16 1,671 with sparsity, FP32 60)"),
    card("H200", &["H200"], &["NVL"], (9, 0), 132, 989.0, 67.0, "NVIDIA H200 Tensor Core GPU datasheet (H200 SXM: BF16 1,979 with sparsity, FP32 67)"),
    card("GH200", &["GH200"], &[], (9, 0), 132, 989.0, 67.0, "NVIDIA GH200 Grace Hopper Superchip datasheet (BF16 1,979 with sparsity, FP32 67)"),
    card("A100", &["A100"], &[], (8, 0), 108, 312.0, 19.5, "NVIDIA A100 Tensor Core GPU datasheet (40 GB and 80 GB, SXM and PCIe: BF16 312, FP32 19.5)"),
    card("A10", &["A10"], &[], (8, 6), 72, 125.0, 31.2, "NVIDIA A10 Tensor Core GPU datasheet (BF16 125, 250 with sparsity; FP32 31.2)"),
    card("L40S", &["L40S"], &[], (8, 9), 142, 362.05, 91.6, "NVIDIA L40S datasheet (BF16 362.05, 733 with sparsity; FP32 91.6)"),
    card("L40", &["L40"], &[], (8, 9), 142, 181.05, 90.5, "NVIDIA L40 datasheet (BF16 181.05, 362.1 with sparsity; FP32 90.5)"),
    card("L4", &["L4"], &[], (8, 9), 58, 121.0, 30.3, "NVIDIA L4 Tensor Core GPU datasheet (BF16 242 with sparsity, FP32 30.3)"),
    card("RTX 4090", &["RTX", "4090"], &[], (8, 9), 128, 165.2, 82.6, "NVIDIA Ada Lovelace architecture whitepaper, appendix A (RTX 4090: BF16 with FP32 accumulate 165.2, FP32 82.6)"),
    card("RTX 3090", &["RTX", "3090"], &["TI"], (8, 6), 82, 71.0, 35.6, "NVIDIA Ampere GA102 GPU architecture whitepaper (RTX 3090: BF16 with FP32 accumulate 71, FP32 35.6)"),
];

pub use crate::backend::Peak;

/// The row of `CARDS` for this card, with the share of its SMs this device has (1 for a whole card,
/// less for a MIG slice); or why there is none.
pub fn find_card(device_name: &str, compute_capability: (i32, i32), sms: u32) -> Result<(Card, f64), String> {
    let upper = device_name.to_uppercase();
    let words: Vec<&str> = upper.split(|ch: char| !ch.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let has = |w: &str| words.contains(&w);
    let (major, minor) = compute_capability;
    let unknown = |what: String| Err(format!("{device_name} (sm_{major}{minor}, {sms} SMs): {what}, so no MFU"));
    let Some(card) = CARDS.iter().find(|c| c.words.iter().all(|w| has(w)) && !c.not_words.iter().any(|w| has(w)))
    else {
        return unknown("not in the table of peak FLOP/s (src/cuda/peak.rs)".to_string());
    };
    if card.compute_capability != compute_capability {
        let (a, b) = card.compute_capability;
        return unknown(format!("the table's {} is sm_{a}{b}", card.card));
    }
    if sms == 0 || sms > card.sms {
        return unknown(format!("the table's {} has {} SMs", card.card, card.sms));
    }
    Ok((*card, sms as f64 / card.sms as f64))
}

/// The peak of the arithmetic a run in `precision` with `matmul` does on this card (see the table
/// at the top), scaled by the card's share of SMs.
pub fn peak(card: &Card, sm_share: f64, precision: Precision, matmul: Matmul) -> Peak {
    let (flops, what) = match (precision, matmul) {
        (Precision::Bf16, Matmul::Cublas) => (card.bf16_dense, "bf16 dense"),
        _ => (card.fp32, "fp32 non-tensor"),
    };
    let slice = if sm_share < 1.0 {
        format!(" (MIG: {:.0} of its {} SMs)", sm_share * card.sms as f64, card.sms)
    } else {
        String::new()
    };
    let flops = flops * sm_share;
    Peak { flops, name: format!("{}{slice} {what} {:.0} TFLOP/s", card.card, flops / 1e12) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The card, bf16-with-cuBLASLt peak and fp32 peak in TFLOP/s found for a driver name.
    fn found(name: &str, cc: (i32, i32), sms: u32) -> (&'static str, f64, f64) {
        let (card, share) = find_card(name, cc, sms).unwrap_or_else(|why| panic!("{why}"));
        let tflops = |p: Peak| (p.flops / 1e12 * 100.0).round() / 100.0;
        let bf16 = tflops(peak(&card, share, Precision::Bf16, Matmul::Cublas));
        let fp32 = tflops(peak(&card, share, Precision::Fp32, Matmul::Cublas));
        (card.card, bf16, fp32)
    }

    #[test]
    fn every_card_is_found_from_its_driver_name_with_its_peaks() {
        // the names as the driver reports them (nvidia-smi's "name")
        let cases = [
            ("NVIDIA H100 80GB HBM3", (9, 0), 132, ("H100 SXM", 989.0, 67.0)),
            ("NVIDIA H100 PCIe", (9, 0), 114, ("H100 PCIe", 756.0, 51.0)),
            ("NVIDIA H100 NVL", (9, 0), 132, ("H100 NVL", 835.5, 60.0)),
            ("NVIDIA H200", (9, 0), 132, ("H200", 989.0, 67.0)),
            ("NVIDIA H200 NVL", (9, 0), 132, ("H200 NVL", 835.5, 60.0)),
            ("NVIDIA GH200 480GB", (9, 0), 132, ("GH200", 989.0, 67.0)),
            ("NVIDIA A100-SXM4-40GB", (8, 0), 108, ("A100", 312.0, 19.5)),
            ("NVIDIA A100-SXM4-80GB", (8, 0), 108, ("A100", 312.0, 19.5)),
            ("NVIDIA A100 80GB PCIe", (8, 0), 108, ("A100", 312.0, 19.5)),
            ("NVIDIA A10", (8, 6), 72, ("A10", 125.0, 31.2)),
            ("NVIDIA L40S", (8, 9), 142, ("L40S", 362.05, 91.6)),
            ("NVIDIA L40", (8, 9), 142, ("L40", 181.05, 90.5)),
            ("NVIDIA L4", (8, 9), 58, ("L4", 121.0, 30.3)),
            ("NVIDIA GeForce RTX 4090", (8, 9), 128, ("RTX 4090", 165.2, 82.6)),
            ("NVIDIA GeForce RTX 3090", (8, 6), 82, ("RTX 3090", 71.0, 35.6)),
        ];
        for (name, cc, sms, want) in cases {
            assert_eq!(found(name, cc, sms), want, "{name}");
        }
        // every row of the table is reached by one of the names above
        for card in &CARDS {
            assert!(cases.iter().any(|c| c.3 .0 == card.card), "no test for {}", card.card);
        }
    }

    #[test]
    fn the_peak_is_that_of_the_precision_and_matmul_path_running() {
        let (h200, share) = find_card("NVIDIA H200", (9, 0), 132).unwrap();
        let name = |p: Precision, m: Matmul| peak(&h200, share, p, m).name;
        assert_eq!(name(Precision::Bf16, Matmul::Cublas), "H200 bf16 dense 989 TFLOP/s");
        // our own kernels widen bf16 to fp32 and multiply on the CUDA cores
        assert_eq!(name(Precision::Bf16, Matmul::Handwritten), "H200 fp32 non-tensor 67 TFLOP/s");
        assert_eq!(name(Precision::Bf16, Matmul::Naive), "H200 fp32 non-tensor 67 TFLOP/s");
        // cuBLAS SGEMM without TF32
        assert_eq!(name(Precision::Fp32, Matmul::Cublas), "H200 fp32 non-tensor 67 TFLOP/s");
        assert_eq!(name(Precision::Fp32, Matmul::Handwritten), "H200 fp32 non-tensor 67 TFLOP/s");
    }

    #[test]
    fn a_mig_slice_gets_its_share_of_the_peak() {
        let (card, share) = find_card("NVIDIA H100 80GB HBM3 MIG 3g.40gb", (9, 0), 66).unwrap();
        let p = peak(&card, share, Precision::Bf16, Matmul::Cublas);
        assert_eq!(p.flops, 989e12 / 2.0);
        assert_eq!(p.name, "H100 SXM (MIG: 66 of its 132 SMs) bf16 dense 494 TFLOP/s");
    }

    #[test]
    fn unknown_cards_get_no_mfu_and_a_reason() {
        let why = find_card("NVIDIA GeForce GTX 1080", (6, 1), 20).unwrap_err();
        assert!(why.contains("not in the table") && why.contains("no MFU"), "{why}");
        // the right name but not the card of the table
        let why = find_card("NVIDIA H100 PCIe", (9, 0), 132).unwrap_err();
        assert!(why.contains("114 SMs"), "{why}");
        let why = find_card("NVIDIA A100-SXM4-80GB", (9, 0), 108).unwrap_err();
        assert!(why.contains("sm_80"), "{why}");
        // whole words: an L40S is not an L40, an RTX 3090 Ti not an RTX 3090
        assert_eq!(find_card("NVIDIA L40S", (8, 9), 142).unwrap().0.card, "L40S");
        assert!(find_card("NVIDIA GeForce RTX 3090 Ti", (8, 6), 84).is_err());
    }
}
