//! The boto3 peer (`benches/peer_boto3.py`): the same jobs done with boto3 against the same
//! moto, run as a child of the benchmark that compares itself to it.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

/// The Python with boto3: `BENCH_PYTHON`, else the project's `.venv` (`make venv`), else
/// `python3`.
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("BENCH_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// Runs `peer_boto3.py <args>` with `input` on its stdin and returns the JSON line it prints.
pub fn run(args: &[&str], input: &str) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/peer_boto3.py");
    let mut child = Command::new(python())
        .arg(&script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start the boto3 peer ({}): {e}", python().display()));
    {
        let mut stdin = child.stdin.take().expect("the peer's stdin");
        stdin
            .write_all(input.as_bytes())
            .expect("write to the boto3 peer");
    }
    let out = child.wait_with_output().expect("wait for the boto3 peer");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the boto3 peer ({}) failed ({}): {stdout}",
        args.join(" "),
        out.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("the boto3 peer printed no result: {stdout}"));
    serde_json::from_str(line).expect("a JSON result from the boto3 peer")
}
