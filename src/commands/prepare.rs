//! `prepare` command (written by the tokenizer issue).

/// Arguments of `prepare`.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: &Args) -> anyhow::Result<()> {
    anyhow::bail!("the prepare command is not built yet")
}
