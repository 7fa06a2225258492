//! `plot`: training curves from a `train --log` JSONL file, as SVG or PNG (`src/plot.rs` draws them).

use anyhow::Result;
use gpt2::plot::{read_log, write_plot};
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The JSONL log written by `train --log`.
    pub log: PathBuf,
    /// Where to write the chart: a name ending in .svg or .png.
    #[arg(short, long, default_value = "curves.svg")]
    pub out: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    let log = read_log(&args.log)?;
    if log.skipped > 0 {
        eprintln!("(skipped {} lines of {} that are not log records)", log.skipped, args.log.display());
    }
    write_plot(&log, &args.out)?;
    eprintln!("wrote {} ({} steps)", args.out.display(), log.records.len());
    Ok(())
}
