//! `tokenize` command (written by the tokenizer issue).

/// Arguments of `tokenize`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: &Args) -> anyhow::Result<()> {
    anyhow::bail!("the tokenize command is not built yet")
}
