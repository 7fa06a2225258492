//! What a training run tells: the console (a header, about 20 step lines a run, validations, the time
//! left) and the JSONL log (`--log`: one JSON object per step, flushed as written, so a crash loses at
//! most the step it was in).
//!
//! Steps are numbered from 1 everywhere (console, log, checkpoints, `--save-every`): step N is the
//! N-th optimizer update, and a validation shown or logged at step N measured the model after it.
//! Step 0 is the model before training (its validation, when the run starts from scratch or `--init`).

use super::step::StepStats;
use super::TrainConfig;
use anyhow::{Context, Result};
use std::io::Write;

/// The console and the log of one run.
pub struct Report {
    log: Option<std::io::BufWriter<std::fs::File>>,
    quiet: bool,
    /// stderr is a terminal: the line between kept lines is rewritten in place.
    tty: bool,
    print_every: usize,
    steps: usize,
    first_step: usize,
    last_step: usize,
    total_ms: f64,
    timed_steps: usize,
}

/// One step's line: its statistics, time, and the evaluations made after it.
pub struct StepLine<'a> {
    /// 1-based.
    pub step: usize,
    pub stats: StepStats,
    pub ms: f64,
    pub tok_per_s: f64,
    /// Model FLOPs utilization, and the peak it is a fraction of.
    pub mfu: Option<(f64, &'a str)>,
    pub val_loss: Option<f32>,
    pub scores: &'a [(&'static str, f64)],
}

impl Report {
    /// Opens `cfg.log` for appending (a resumed run continues its log) for a run of steps
    /// `first_step..=last_step` (1-based) of `cfg.steps`.
    pub fn open(cfg: &TrainConfig, first_step: usize, last_step: usize) -> Result<Self> {
        let log = match &cfg.log {
            Some(path) => Some(std::io::BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("{}: cannot open the log file", path.display()))?,
            )),
            None => None,
        };
        Ok(Report {
            log,
            quiet: cfg.quiet,
            tty: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            // the console keeps about 20 step lines of a run (plus validations); the log has every step
            print_every: if cfg.print_every > 0 { cfg.print_every } else { cfg.steps.div_ceil(20).max(1) },
            steps: cfg.steps,
            first_step,
            last_step,
            total_ms: 0.0,
            timed_steps: 0,
        })
    }

    /// The run's first line: what trains where, the batch, the data.
    pub fn header(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    /// The validation of the model before the first step (step 0).
    pub fn before_training(&mut self, val_loss: Option<f32>, scores: &[(&'static str, f64)]) -> Result<()> {
        if val_loss.is_none() && scores.is_empty() {
            return Ok(());
        }
        let mut record = serde_json::json!({ "step": 0 });
        let mut text = String::new();
        if let Some(v) = val_loss {
            record["val_loss"] = serde_json::json!(shortest(v));
            text += &format!(" | val {v:.4}");
        }
        for (name, score) in scores {
            record[*name] = serde_json::json!(score);
            text += &format!(" | {name} {score:.4}");
        }
        self.write(&record)?;
        if !self.quiet {
            eprintln!("step {:>5}/{}{text} (before training)", 0, self.steps);
        }
        Ok(())
    }

    /// One optimizer step: its log record, and its console line (kept on screen at the first and last
    /// step, at every validation and every `print_every` steps; on a terminal the line in between is
    /// rewritten in place).
    pub fn step(&mut self, s: &StepLine) -> Result<()> {
        // the first step pays for allocation and warm-up; leave it out of the average
        if s.step > self.first_step || self.first_step == self.last_step {
            self.total_ms += s.ms;
            self.timed_steps += 1;
        }
        let f = shortest;
        let mut record = serde_json::json!({
            "step": s.step, "train_loss": f(s.stats.loss), "lr": f(s.stats.lr), "norm": f(s.stats.norm),
            "ms": s.ms, "tok_per_s": s.tok_per_s,
        });
        if let Some(v) = s.val_loss {
            record["val_loss"] = serde_json::json!(f(v));
        }
        if let Some((mfu, peak)) = &s.mfu {
            record["mfu"] = serde_json::json!(mfu);
            record["mfu_of"] = serde_json::json!(peak);
        }
        for (name, score) in s.scores {
            record[*name] = serde_json::json!(score);
        }
        self.write(&record)?;
        if self.quiet {
            return Ok(());
        }
        let StepStats { loss, norm, lr } = s.stats;
        let left = format_duration(self.mean_ms().unwrap_or(s.ms) / 1e3 * (self.last_step - s.step) as f64);
        let mut evals = s.val_loss.map_or(String::new(), |v| format!(" | val {v:.4}"));
        s.scores.iter().for_each(|(name, score)| evals += &format!(" | {name} {score:.4}"));
        let mfu = s.mfu.as_ref().map_or(String::new(), |(m, _)| format!(" | mfu {:.1}%", 100.0 * m));
        let line = format!(
            "step {:>5}/{} | train {loss:.4}{evals} | lr {lr:.2e} | norm {norm:.3} | {:.0} ms | {:.0} tok/s{mfu} | {left} left",
            s.step, self.steps, s.ms, s.tok_per_s,
        );
        let keep = s.step == self.first_step
            || s.step == self.last_step
            || s.val_loss.is_some()
            || s.step.is_multiple_of(self.print_every);
        if keep {
            eprintln!("{}{line}", if self.tty { "\r\x1b[2K" } else { "" });
        } else if self.tty {
            eprint!("\r\x1b[2K{line}");
        }
        Ok(())
    }

    /// The mean time of a step, leaving out the first (warm-up) step, once one is measured.
    pub fn mean_ms(&self) -> Option<f64> {
        (self.timed_steps > 0).then(|| self.total_ms / self.timed_steps as f64)
    }

    fn write(&mut self, record: &serde_json::Value) -> Result<()> {
        if let Some(log) = self.log.as_mut() {
            writeln!(log, "{record}").context("cannot write to the log file")?;
            log.flush().context("cannot write to the log file")?;
        }
        Ok(())
    }
}

/// 75 -> "1m15s".
fn format_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// f32 -> f64 through the shortest decimal, so 5e-5 is logged as 5e-5, not 5.0000002e-5.
fn shortest(x: f32) -> f64 {
    x.to_string().parse::<f64>().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_seconds_minutes_or_hours() {
        assert_eq!(format_duration(42.4), "42s");
        assert_eq!(format_duration(75.0), "1m15s");
        assert_eq!(format_duration(7_380.0), "2h03m");
        assert_eq!(format_duration(-3.0), "0s");
    }

    #[test]
    fn logged_numbers_are_the_shortest_decimal_of_the_f32() {
        assert_eq!(shortest(5e-5), 5e-5);
        assert_eq!(shortest(0.1), 0.1);
    }
}
