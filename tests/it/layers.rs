//! The layering ARCHITECTURE.md draws, checked against the code: every
//! `use crate::…` (or `super::…` reaching another room) in `src/` points to a
//! room on a lower layer. A new import that points sideways or up, or closes a
//! circle, fails here with the file that makes it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Rooms by layer, lowest first, as in ARCHITECTURE.md's "Layers".
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["keys"],
    &["model", "progress", "rules"],
    &["integrity"],
    &["store", "catalog"],
    &["config", "metrics"],
    &["source"],
    &["archiver"],
    &["scrub", "restore", "demo", "get"],
    &["bin: terminal"],
    &["bin: settings", "bin: format"],
    &["bin: progress"],
    &["bin: commands"],
    &["bin: main"],
];

fn layer_of(room: &str) -> usize {
    LAYERS
        .iter()
        .position(|rooms| rooms.contains(&room))
        .unwrap_or_else(|| {
            panic!("room {room} is on no layer: add it to LAYERS and ARCHITECTURE.md")
        })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The room a file under `src/` belongs to, `None` for the crate root.
fn room_of(relative: &Path) -> Option<String> {
    let parts: Vec<&str> = relative.iter().map(|p| p.to_str().unwrap()).collect();
    match parts.as_slice() {
        ["lib.rs"] => None,
        ["bin", "coldsweep", "commands", ..] => Some("bin: commands".into()),
        ["bin", "coldsweep", file] => Some(format!("bin: {}", file.trim_end_matches(".rs"))),
        [first, ..] => Some(first.trim_end_matches(".rs").to_owned()),
        [] => None,
    }
}

/// Rooms a file's code (comments and test modules left out) imports.
fn imports(code: &str, binary: bool) -> BTreeSet<String> {
    let code = code.split("#[cfg(test)]").next().unwrap_or_default();
    let mut rooms = BTreeSet::new();
    for line in code.lines().map(str::trim) {
        if line.starts_with("//") {
            continue;
        }
        let library = ["crate::", "coldsweep::"];
        for prefix in library {
            for (at, _) in line.match_indices(prefix) {
                let before = line[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let rest = &line[at + prefix.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let room = if binary && prefix == "crate::" {
                    format!("bin: {name}")
                } else if name.chars().next().is_some_and(char::is_uppercase) {
                    // `Error`, `ErrorKind`, `Result` re-exported at the root.
                    "error".to_owned()
                } else {
                    name
                };
                rooms.insert(room);
            }
        }
    }
    rooms
}

#[test]
fn every_import_points_down_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();

    let mut edges: BTreeMap<(String, String), PathBuf> = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let Some(room) = room_of(relative) else {
            continue;
        };
        let binary = room.starts_with("bin: ");
        let code = std::fs::read_to_string(file).unwrap();
        for target in imports(&code, binary) {
            if target != room && !target.is_empty() {
                edges
                    .entry((room.clone(), target))
                    .or_insert_with(|| relative.to_owned());
            }
        }
    }
    assert!(
        edges.len() > 20,
        "the scan found too few imports to mean anything: {edges:?}"
    );

    let wrong: Vec<String> = edges
        .iter()
        .filter(|((from, to), _)| layer_of(to) >= layer_of(from))
        .map(|((from, to), file)| format!("{from} → {to} ({})", file.display()))
        .collect();
    assert!(
        wrong.is_empty(),
        "imports that do not point down a layer:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_scan_sees_an_upward_import() {
    // The check above is only worth something if it would notice one.
    let rooms = imports(
        "use crate::archiver::Archiver;\n// use crate::demo::x;\nlet a = coldsweep::scrub::run;",
        false,
    );
    assert_eq!(rooms.into_iter().collect::<Vec<_>>(), ["archiver", "scrub"]);
    assert!(layer_of("archiver") > layer_of("source"));
}
