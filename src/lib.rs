//! GPT-2 from scratch: tokenizer, every layer forward and backward, AdamW, data loading and
//! training, on the CPU (the readable reference) and on CUDA GPUs.

pub mod atomic_file;
pub mod commands;
pub mod config;
pub mod cpu;
pub mod model;
pub mod tokenizer;
