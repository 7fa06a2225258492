//! Training curves from the JSONL log `train --log` writes (one record a step: `step`, `train_loss`,
//! `lr`, `norm`, `ms`, `tok_per_s`, and `val_loss`, `mfu`, `hellaswag_acc_norm` when measured), drawn
//! with plotters as SVG or PNG: `gpt2 plot LOG.jsonl -o curves.svg`. The server's training view
//! (`serve --log`) draws the same picture as the log grows.
//!
//! A log being written may end with half a line; lines that are not JSON objects are skipped and
//! counted, so a live log always plots.

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value;
use std::path::Path;

/// The font every chart's text is drawn in, shipped in `data/fonts/` (see its README).
static FONT: &[u8] = include_bytes!("../data/fonts/DejaVuSans.ttf");

/// One step of the log; each value is absent when the record does not have it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    pub step: f64,
    pub train_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub lr: Option<f64>,
    pub norm: Option<f64>,
    pub tok_per_s: Option<f64>,
    pub hellaswag: Option<f64>,
}

/// A parsed log.
#[derive(Clone, Debug, Default)]
pub struct TrainLog {
    pub records: Vec<Record>,
    /// Lines that were not records (a half-written last line, say).
    pub skipped: usize,
}

impl TrainLog {
    /// The records as JSON objects (for the web page).
    pub fn records_json(&self) -> Vec<Value> {
        self.records
            .iter()
            .map(|r| {
                serde_json::json!({"step": r.step, "train_loss": r.train_loss, "val_loss": r.val_loss, "lr": r.lr,
                                   "norm": r.norm, "tok_per_s": r.tok_per_s, "hellaswag_acc_norm": r.hellaswag})
            })
            .collect()
    }
}

/// Parses the JSONL text of a training log.
pub fn parse_log(text: &str) -> TrainLog {
    let mut log = TrainLog::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let value: Option<Value> = serde_json::from_str(line).ok();
        let Some(obj) = value.as_ref().and_then(Value::as_object) else {
            log.skipped += 1;
            continue;
        };
        // a number that is finite, or nothing
        let num = |key: &str| obj.get(key).and_then(Value::as_f64).filter(|x| x.is_finite());
        let Some(step) = num("step") else {
            log.skipped += 1;
            continue;
        };
        log.records.push(Record {
            step,
            train_loss: num("train_loss"),
            val_loss: num("val_loss"),
            lr: num("lr"),
            norm: num("norm"),
            tok_per_s: num("tok_per_s"),
            hellaswag: num("hellaswag_acc_norm"),
        });
    }
    log
}

/// Reads and parses a training log file.
pub fn read_log(path: &Path) -> Result<TrainLog> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the training log {}", path.display()))?;
    Ok(parse_log(&text))
}

/// One chart of the figure: a title and its lines.
struct Panel {
    title: &'static str,
    lines: Vec<Line>,
}

/// One curve: its legend name, colour, (step, value) points, and whether to mark each point (for
/// values measured only now and then, like the validation loss).
struct Line(&'static str, RGBColor, Vec<(f64, f64)>, bool);

fn series(log: &TrainLog, pick: impl Fn(&Record) -> Option<f64>) -> Vec<(f64, f64)> {
    log.records.iter().filter_map(|r| pick(r).map(|y| (r.step, y))).collect()
}

fn panels(log: &TrainLog) -> Vec<Panel> {
    let blue = RGBColor(31, 119, 180);
    let orange = RGBColor(255, 127, 14);
    let green = RGBColor(44, 160, 44);
    let mut panels = vec![
        Panel {
            title: "loss",
            lines: vec![
                Line("train", blue, series(log, |r| r.train_loss), false),
                Line("val", orange, series(log, |r| r.val_loss), true),
            ],
        },
        Panel { title: "learning rate", lines: vec![Line("lr", blue, series(log, |r| r.lr), false)] },
        Panel { title: "gradient norm", lines: vec![Line("norm", blue, series(log, |r| r.norm), false)] },
        Panel { title: "tokens / s", lines: vec![Line("tok/s", green, series(log, |r| r.tok_per_s), false)] },
    ];
    let hellaswag = series(log, |r| r.hellaswag);
    if !hellaswag.is_empty() {
        panels.push(Panel { title: "HellaSwag acc_norm", lines: vec![Line("acc_norm", orange, hellaswag, true)] });
    }
    panels
}

/// A range that contains every value, with a margin, and is never empty.
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { 0.05 * (hi - lo) } else { lo.abs().max(1e-9) * 0.1 };
    (lo - pad, hi + pad)
}

fn register_font() -> Result<()> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok());
    if !ok {
        bail!("the embedded font data/fonts/DejaVuSans.ttf could not be loaded");
    }
    Ok(())
}

/// Draws every panel on `root`, three to a row.
fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, log: &TrainLog) -> Result<()> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing the chart failed: {e}");
    register_font()?;
    root.fill(&WHITE).map_err(err)?;
    let panels = panels(log);
    let areas = root.split_evenly((2, 3));
    let (x0, x1) = padded_range(log.records.iter().map(|r| r.step));
    for (area, panel) in areas.iter().zip(&panels) {
        let (y0, y1) = padded_range(panel.lines.iter().flat_map(|l| l.2.iter().map(|p| p.1)));
        let mut chart = ChartBuilder::on(area)
            .caption(panel.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(72)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .x_labels(6)
            .y_labels(6)
            .label_style(("sans-serif", 12))
            .y_label_formatter(&|y| format_tick(*y, y1 - y0))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(err)?;
        for Line(name, color, points, dots) in &panel.lines {
            if points.is_empty() {
                continue;
            }
            let color = *color;
            let style = ShapeStyle::from(&color).stroke_width(2);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), style))
                .map_err(err)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
            if *dots {
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(err)?;
            }
        }
        if panel.lines.len() > 1 {
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 12))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Tick labels that stay short from 1e-5 (learning rates) to 1e6 (tokens per second), with as many
/// decimals as the axis' `span` needs to tell its ticks apart.
fn format_tick(y: f64, span: f64) -> String {
    let a = y.abs();
    if a == 0.0 {
        return "0".into();
    }
    if !(1e-2..1e6).contains(&a) {
        return format!("{y:.1e}");
    }
    let decimals = (1.0 - span.log10().floor()).clamp(0.0, 4.0) as usize;
    format!("{y:.decimals$}")
}

/// The figure's size in pixels.
const SIZE: (u32, u32) = (1200, 720);

/// The curves as an SVG document.
pub fn render_svg(log: &TrainLog) -> Result<String> {
    if log.records.is_empty() {
        bail!("the training log has no records yet ({} lines skipped)", log.skipped);
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw(&root, log)?;
    }
    Ok(svg)
}

/// Writes the curves to `out`: SVG or PNG, by its extension.
pub fn write_plot(log: &TrainLog, out: &Path) -> Result<()> {
    if log.records.is_empty() {
        bail!("the training log has no records ({} lines skipped)", log.skipped);
    }
    let ext = out.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("svg") => {
            let svg = render_svg(log)?;
            std::fs::write(out, svg).with_context(|| format!("cannot write {}", out.display()))
        }
        Some("png") => {
            let root = BitMapBackend::new(out, SIZE).into_drawing_area();
            draw(&root, log).with_context(|| format!("cannot write {}", out.display()))
        }
        _ => bail!("cannot tell the image format of {}: use a name ending in .svg or .png", out.display()),
    }
}
