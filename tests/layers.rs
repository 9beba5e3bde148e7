//! The layer rules, checked on the source: dependencies point inward only (domain <- app <-
//! adapters, lambda <- wiring, bin), each layer keeps out the crates that belong to outer
//! ones, and no module imports, through any chain, a module that imports it back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each part of `src/` may use of the crate, and which outside crates it must not name.
struct Rule {
    part: &'static str,
    may_use: &'static [&'static str],
    forbidden_crates: &'static [&'static str],
}

const IO_CRATES: &[&str] = &[
    "aws_config",
    "aws_sdk_dynamodb",
    "aws_sdk_eventbridge",
    "aws_sdk_s3",
    "aws_sdk_secretsmanager",
    "aws_lambda_events",
    "lambda_http",
    "lambda_runtime",
    "reqwest",
    "serde_dynamo",
    "standardwebhooks",
];

const RULES: &[Rule] = &[
    Rule {
        part: "domain",
        may_use: &["domain", "error"],
        // Pure: no runtime, no logging either.
        forbidden_crates: &[
            "aws_config",
            "aws_sdk_dynamodb",
            "aws_sdk_eventbridge",
            "aws_sdk_s3",
            "aws_sdk_secretsmanager",
            "aws_lambda_events",
            "lambda_http",
            "lambda_runtime",
            "reqwest",
            "serde_dynamo",
            "tokio",
            "tracing",
        ],
    },
    Rule {
        part: "app",
        may_use: &["app", "domain", "error"],
        forbidden_crates: IO_CRATES,
    },
    Rule {
        part: "adapters",
        may_use: &["adapters", "app", "domain", "error"],
        forbidden_crates: &["lambda_http", "lambda_runtime", "aws_lambda_events"],
    },
    Rule {
        part: "lambda",
        may_use: &["lambda", "app", "domain", "error"],
        // The stream's records arrive as serde_dynamo items, so that crate is the front end's.
        forbidden_crates: &[
            "aws_config",
            "aws_sdk_dynamodb",
            "aws_sdk_eventbridge",
            "aws_sdk_s3",
            "aws_sdk_secretsmanager",
            "reqwest",
            "standardwebhooks",
        ],
    },
    Rule {
        part: "config",
        may_use: &["config", "app", "domain", "error"],
        forbidden_crates: IO_CRATES,
    },
    Rule {
        part: "cli",
        may_use: &["cli", "domain", "error"],
        forbidden_crates: IO_CRATES,
    },
    Rule {
        part: "error",
        may_use: &["error"],
        forbidden_crates: IO_CRATES,
    },
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The module path of a file: `src/adapters/source/mod.rs` is `adapters::source`.
fn module_of(file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src()).expect("under src/");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|last| last == "mod" || last == "lib")
    {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its unit tests.
fn code_of(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("source file");
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::a::b::...` path a file names, as segments (`use crate::a::{b, c}` names a::b
/// and a::c), with `super::` resolved against the file's own module.
fn crate_paths(code: &str, module: &[String], is_mod_file: bool) -> Vec<Vec<String>> {
    let flat = squeeze(code);
    let mut paths = Vec::new();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", {
            // A mod.rs file's `super` is its module's parent; another file's is its own parent.
            let mut parent = module.to_vec();
            if !is_mod_file || !parent.is_empty() {
                parent.pop();
            }
            parent
        }),
    ] {
        let mut rest = flat.as_str();
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().last();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            for tail in expand(rest) {
                let mut path = base.clone();
                path.extend(tail);
                paths.push(path);
            }
        }
    }
    paths
}

/// The code with whitespace dropped, except one space between two words (`use crate`).
fn squeeze(code: &str) -> String {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::with_capacity(code.len());
    let mut pending_space = false;
    for c in code.chars() {
        if c.is_whitespace() {
            pending_space = true;
            continue;
        }
        if pending_space && out.chars().last().is_some_and(word) && word(c) {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
    }
    out
}

/// `a::b::{c, d::e}; ...` -> [[a, b, c], [a, b, d, e]] (the first group only).
fn expand(text: &str) -> Vec<Vec<String>> {
    let mut head = Vec::new();
    let mut rest = text;
    loop {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end > 0 {
            head.push(rest[..end].to_owned());
        }
        rest = &rest[end..];
        if let Some(next) = rest.strip_prefix("::") {
            if let Some(group) = next.strip_prefix('{') {
                let mut depth = 1;
                let mut close = group.len();
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        close = i;
                        break;
                    }
                }
                let inner = &group[..close];
                let mut parts = Vec::new();
                let mut depth = 0;
                let mut start = 0;
                for (i, c) in inner.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            parts.push(&inner[start..i]);
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
                parts.push(&inner[start..]);
                return parts
                    .into_iter()
                    .filter(|p| !p.is_empty())
                    .flat_map(expand)
                    .map(|tail| head.iter().cloned().chain(tail).collect())
                    .collect();
            }
            rest = next;
            continue;
        }
        return vec![head];
    }
}

struct Source {
    module: Vec<String>,
    code: String,
    paths: Vec<Vec<String>>,
}

fn sources() -> Vec<Source> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files
        .iter()
        .filter(|f| !f.starts_with(src().join("bin")))
        .map(|file| {
            let module = module_of(file);
            let code = code_of(file);
            let is_mod_file = file.file_name().is_some_and(|n| n == "mod.rs");
            let paths = crate_paths(&code, &module, is_mod_file);
            Source {
                module,
                code,
                paths,
            }
        })
        .collect()
}

#[test]
fn each_layer_uses_only_the_layers_inside_it() {
    let mut broken = Vec::new();
    let sources = sources();
    assert!(sources.len() > 20, "found only {} modules", sources.len());
    for source in &sources {
        let Some(part) = source.module.first() else {
            continue;
        };
        if part == "wiring" {
            continue;
        }
        let rule = RULES
            .iter()
            .find(|r| r.part == part)
            .unwrap_or_else(|| panic!("no layer rule for src/{part}: add one"));
        for path in &source.paths {
            if let Some(used) = path.first()
                && !rule.may_use.contains(&used.as_str())
            {
                broken.push(format!(
                    "{} uses crate::{}",
                    source.module.join("::"),
                    path.join("::")
                ));
            }
        }
        for name in rule.forbidden_crates {
            let named = source
                .code
                .match_indices(&format!("{name}::"))
                .any(|(at, _)| {
                    let before = source.code[..at].chars().last();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
                });
            if named {
                broken.push(format!("{} names {name}", source.module.join("::")));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "layer rules broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn no_module_imports_itself_through_others() {
    let sources = sources();
    let modules: BTreeSet<Vec<String>> = sources.iter().map(|s| s.module.clone()).collect();
    // An edge goes to the deepest module a path names (crate::app::copy::CopyEngine -> app::copy).
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for source in &sources {
        for path in &source.paths {
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|prefix| modules.contains(prefix));
            if let Some(target) = target
                && target != source.module
            {
                edges
                    .entry(source.module.clone())
                    .or_default()
                    .insert(target);
            }
        }
    }
    assert!(
        edges.values().map(BTreeSet::len).sum::<usize>() > 30,
        "too few imports found: the scan is broken"
    );
    let mut cycles = Vec::new();
    for start in &modules {
        // Depth-first from each module: reaching it again is a cycle.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((at, trail)) = stack.pop() {
            for next in edges.get(&at).into_iter().flatten() {
                if next == start {
                    let names: Vec<String> = trail.iter().map(|m| m.join("::")).collect();
                    cycles.push(format!("{} -> {}", names.join(" -> "), start.join("::")));
                } else if seen.insert(next.clone()) {
                    let mut longer = trail.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_scanner_reads_grouped_and_relative_imports() {
    let code = "use crate::app::{copy::{CopyEngine, X}, ports::Ports};\nuse super::key;";
    let module = vec![
        "adapters".to_owned(),
        "dynamodb".to_owned(),
        "tasks".to_owned(),
    ];
    let paths = crate_paths(code, &module, false);
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        joined,
        [
            "app::copy::CopyEngine",
            "app::copy::X",
            "app::ports::Ports",
            "adapters::dynamodb::key"
        ]
    );
}
