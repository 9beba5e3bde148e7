//! The one table `make bench` ends with: every benchmark appends its headline rows, as JSON
//! lines, to the file named by `BENCH_SUMMARY`, and `scripts/bench_summary.py` prints them as one
//! markdown table. Without `BENCH_SUMMARY` (a single benchmark run on its own) nothing is written.
//! Figures that have a peer (the boto3 peer, `benches/peer_boto3.py`) carry its figure and the
//! ratio to it as well.
#![allow(dead_code)]

use std::io::Write;

use serde_json::json;

/// One row of the table: a figure, its floor where it has one, and the target it is held to.
pub struct Row<'a> {
    pub part: &'a str,
    pub figure: String,
    pub measured: String,
    pub floor: String,
    pub vs_floor: String,
    pub target: String,
}

pub fn record(row: Row<'_>) {
    record_vs_peer(row, String::new(), String::new());
}

/// The same, with the peer's figure and the ratio of this project's to it.
pub fn record_vs_peer(row: Row<'_>, peer: String, vs_peer: String) {
    let Some(path) = std::env::var_os("BENCH_SUMMARY") else {
        return;
    };
    let line = json!({
        "part": row.part,
        "figure": row.figure,
        "measured": row.measured,
        "floor": row.floor,
        "vs_floor": row.vs_floor,
        "peer": peer,
        "vs_peer": vs_peer,
        "target": row.target,
    });
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| writeln!(file, "{line}"));
    if let Err(err) = written {
        eprintln!("cannot append to {}: {err}", path.to_string_lossy());
    }
}

/// `met` or `MISSED`, after the target it was held to.
pub fn verdict(target: &str, met: bool) -> String {
    format!("{target}: {}", if met { "met" } else { "MISSED" })
}
