//! The layers of `server/src` (see `lib.rs`), held by reading every `crate::` path in every
//! file: a module may name only the layers before its own, and no two files may name each
//! other, however indirectly. A new import that runs back up fails here with the file and path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each layer, and the layers its files may import (besides their own folder).
const RULES: &[(&str, &[&str])] = &[
    ("config", &[]),
    ("metrics", &[]),
    ("encoding", &[]),
    ("runtime", &["encoding", "config", "metrics"]),
    ("feed", &["runtime", "encoding", "config", "metrics"]),
    ("api", &["feed", "runtime", "encoding", "config", "metrics"]),
    (
        "site",
        &["feed", "runtime", "encoding", "config", "metrics"],
    ),
    (
        "transport",
        &["site", "runtime", "encoding", "config", "metrics"],
    ),
    ("client", &["runtime", "encoding", "config"]),
    (
        "server",
        &[
            "transport",
            "api",
            "site",
            "feed",
            "runtime",
            "encoding",
            "config",
            "metrics",
        ],
    ),
];

/// A module's path (`["api", "events"]`) for each file under `src`.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("the source tree") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(src)
                .expect("under src")
                .with_extension("");
            let mut segments: Vec<String> = rel
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            if matches!(segments.last().map(String::as_str), Some("mod" | "lib")) {
                segments.pop();
            }
            out.insert(segments, path);
        }
    }
    out
}

/// Every `crate::a::b…` path in `text`, with `crate::a::{b, c::d}` read as `a::b` and `a::c::d`.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `ringback_crate::` or the like
        }
        let rest = &text[at + "crate::".len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let stem: Vec<String> = rest[..end]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if rest[end..].starts_with('{') {
            let group = &rest[end + 1..rest[end..].find('}').map_or(rest.len(), |i| end + i)];
            for item in group.split(',') {
                let mut path = stem.clone();
                path.extend(
                    item.trim()
                        .split("::")
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty() && s != "self"),
                );
                out.push(path);
            }
        } else {
            out.push(stem);
        }
    }
    out
}

/// The module a path names: its longest prefix that is a file.
fn resolve(path: &[String], modules: &BTreeMap<Vec<String>, PathBuf>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains_key(prefix))
}

#[test]
fn imports_run_down_the_layers_with_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    let rules: BTreeMap<&str, &[&str]> = RULES.iter().copied().collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut broken = Vec::new();
    for (module, file) in &modules {
        let Some(layer) = module.first().map(String::as_str) else {
            continue; // lib.rs: declarations only
        };
        if layer == "main" {
            continue; // the binary, a user of the library
        }
        let allowed = rules.get(layer).unwrap_or_else(|| {
            panic!(
                "{}: a module outside every layer (add it to RULES)",
                file.display()
            )
        });
        let text = std::fs::read_to_string(file).unwrap();
        for path in crate_paths(&text) {
            let Some(target) = resolve(&path, &modules) else {
                broken.push(format!(
                    "{}: crate::{} names no module",
                    file.display(),
                    path.join("::")
                ));
                continue;
            };
            let to = target[0].as_str();
            if to != layer && !allowed.contains(&to) {
                broken.push(format!(
                    "{}: crate::{} ({layer} may not import {to})",
                    file.display(),
                    path.join("::")
                ));
            }
            if &target != module && !module.starts_with(&target) {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports against the layers:\n{}",
        broken.join("\n")
    );
    // No circle: a depth-first search finds no edge back into its own path.
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        path: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = path.iter().position(|n| n == node) {
            let circle: Vec<String> = path[at..].iter().map(|m| m.join("/")).collect();
            panic!(
                "an import circle: {} -> {}",
                circle.join(" -> "),
                node.join("/")
            );
        }
        path.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, path, done);
        }
        path.pop();
        done.insert(node.clone());
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        visit(node, &edges, &mut Vec::new(), &mut done);
    }
    // The rules have teeth: the modules of every layer are found, and some import across; so
    // are the files of a layer's own folders (`feed/broadcast/history.rs` is `feed`'s).
    for layer in ["runtime", "feed", "api", "site", "transport"] {
        assert!(
            edges.keys().any(|m| m[0] == layer),
            "no file of {layer} imports anything: is the source tree where this test looks?"
        );
    }
    assert!(
        edges.keys().any(|m| m.len() >= 3),
        "no file in a folder inside a layer was read"
    );
}

#[test]
fn paths_are_read_with_their_groups() {
    let text = "use crate::feed::{broadcast::Start, frame};\nlet x = crate::api::events::batch(1);";
    assert_eq!(
        crate_paths(text),
        vec![
            vec!["feed", "broadcast", "Start"],
            vec!["feed", "frame"],
            vec!["api", "events", "batch"],
        ]
    );
}
