//! GPT-2 from scratch: tokenizer, every layer forward and backward, AdamW, data loading and
//! training, on the CPU (the readable reference) and on CUDA GPUs.

// Indexed loops are kept where the index arithmetic is the point of the lesson.
#![allow(clippy::needless_range_loop)]

pub mod backend;
pub mod choice;
pub mod config;
pub mod cpu;
pub mod cuda;
pub mod data;
pub mod device;
/// Learner exercises (EXERCISES.md): compiled only with an `exercise-*` feature, which routes one
/// reference function to the learner's version there.
#[cfg(any(
    feature = "exercise-residual",
    feature = "exercise-encoder",
    feature = "exercise-gelu",
    feature = "exercise-matmul",
    feature = "exercise-layernorm",
    feature = "exercise-softmax_crossentropy",
    feature = "exercise-attention",
    feature = "exercise-adamw",
    feature = "exercise-bpe_merge"
))]
#[path = "../exercises/mod.rs"]
pub mod exercises;
pub mod files;
pub mod hellaswag;
pub mod memory;
pub mod model;
pub mod optim;
pub mod plot;
pub mod precision;
pub mod prepare;
pub mod rng;
pub mod sample;
pub mod serve;
pub mod tokenizer;
pub mod train;
