//! `plot`: reading a training log (also one still being written) and drawing its curves.

use gpt2::plot::{parse_log, render_svg, write_plot};
use std::process::Command;

fn log_text(steps: usize, hellaswag: bool) -> String {
    let mut text = String::new();
    for step in 0..steps {
        let loss = 10.0 / (1.0 + step as f64 * 0.1);
        let mut line = format!(
            "{{\"step\":{step},\"train_loss\":{loss},\"lr\":{},\"norm\":{},\"ms\":120.0,\"tok_per_s\":{}",
            6e-4 * (step as f64 / steps as f64),
            1.0 + 0.1 * step as f64,
            4000.0 + step as f64
        );
        if step % 5 == 0 {
            line += &format!(",\"val_loss\":{}", loss + 0.1);
        }
        if hellaswag && step % 10 == 0 {
            line += &format!(",\"hellaswag_acc_norm\":{}", 0.25 + 0.001 * step as f64);
        }
        text += &line;
        text += "}\n";
    }
    text
}

#[test]
fn a_log_being_written_parses_up_to_its_half_line() {
    let mut text = log_text(12, false);
    text += "{\"step\":12,\"train_lo"; // the writer is mid-line
    let log = parse_log(&text);
    assert_eq!(log.records.len(), 12);
    assert_eq!(log.skipped, 1);
    assert_eq!(log.records[5].val_loss, Some(10.0 / 1.5 + 0.1));
    assert_eq!(log.records[6].val_loss, None);
    assert_eq!(log.records[3].norm, Some(1.0 + 0.1 * 3.0));
    assert!(log.records.iter().all(|r| r.hellaswag.is_none()));
}

#[test]
fn the_svg_has_a_panel_per_curve_and_hellaswag_only_when_logged() {
    let without = render_svg(&parse_log(&log_text(30, false))).unwrap();
    for title in ["loss", "learning rate", "gradient norm", "tokens / s", "step"] {
        assert!(without.contains(title), "no {title:?} in the SVG");
    }
    assert!(!without.contains("HellaSwag"));
    let with = render_svg(&parse_log(&log_text(30, true))).unwrap();
    assert!(with.contains("HellaSwag acc_norm"));
    // an empty log is an error that says so, not an empty picture
    let err = render_svg(&parse_log("")).unwrap_err().to_string();
    assert!(err.contains("no records"), "{err}");
}

#[test]
fn plot_writes_svg_and_png_and_refuses_other_names() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("train.jsonl");
    std::fs::write(&log, log_text(40, true)).unwrap();
    let parsed = parse_log(&std::fs::read_to_string(&log).unwrap());
    let png = dir.path().join("curves.png");
    write_plot(&parsed, &png).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let err = write_plot(&parsed, &dir.path().join("curves.gif")).unwrap_err().to_string();
    assert!(err.contains(".svg or .png"), "{err}");
    // the command as a user runs it
    let svg = dir.path().join("curves.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_gpt2"))
        .args(["plot", log.to_str().unwrap(), "-o", svg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let out = Command::new(env!("CARGO_BIN_EXE_gpt2")).args(["plot", "/nonexistent/log.jsonl"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the training log /nonexistent/log.jsonl"));
}
