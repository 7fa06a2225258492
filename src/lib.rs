//! GPT-2 from scratch: tokenizer, every layer forward and backward, AdamW, data loading and
//! training, on the CPU (the readable reference) and on CUDA GPUs.

// Indexed loops are kept where the index arithmetic is the point of the lesson.
#![allow(clippy::needless_range_loop)]

pub mod commands;
pub mod config;
pub mod cpu;
pub mod cuda;
pub mod data;
pub mod files;
pub mod hellaswag;
pub mod memory;
pub mod model;
pub mod optim;
pub mod prepare;
pub mod rng;
pub mod sample;
pub mod tokenizer;
pub mod train;
