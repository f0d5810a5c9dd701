//! No import cycles between the top-level modules of `src/` (issue 12):
//! every `crate::…` path in `src/**/*.rs` is an edge from the module its
//! file belongs to towards the module the path names, and the graph must
//! have no cycle. A cycle is named with the file and line of each edge, so
//! whoever adds one sees where.
//!
//! The crate root (`src/lib.rs`) only declares and re-exports, and
//! `src/main.rs` is another crate (it says `writ::`), so neither adds edges.
//! Comments, strings and `$crate` in macros are not imports and are skipped.
//! Relative paths (`super::`) are not followed: by house habit they stay
//! inside their own module.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where an edge was first seen: file (relative to the package) and line.
type Site = (String, usize);
/// Module to the modules it imports, each with where it first did.
type Graph = BTreeMap<String, BTreeMap<String, Site>>;

#[test]
fn no_import_cycles_between_top_level_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = graph_of(root);
    assert!(
        graph.len() > 5,
        "found too few modules in src/lib.rs: {:?}",
        graph.keys()
    );
    let cycles = find_cycles(&graph);
    assert!(
        cycles.is_empty(),
        "import cycles between modules (cut one edge of each):\n{}",
        cycles
            .iter()
            .map(|cycle| describe(&graph, cycle))
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

#[test]
fn a_cycle_is_found_and_named_with_its_sites() {
    let mut graph = Graph::new();
    for (from, to) in [
        ("server", "grant"),
        ("grant", "token"),
        ("token", "store"),
        ("store", "grant"),
    ] {
        graph
            .entry(from.into())
            .or_default()
            .insert(to.into(), (format!("src/{from}.rs"), 3));
        graph.entry(to.into()).or_default();
    }
    let cycles = find_cycles(&graph);
    assert_eq!(cycles, [["grant", "token", "store", "grant"]]);
    let text = describe(&graph, &cycles[0]);
    assert!(text.contains("store -> grant (src/store.rs:3)"), "{text}");

    graph.get_mut("store").unwrap().clear();
    assert!(find_cycles(&graph).is_empty());
}

#[test]
fn paths_are_read_from_code_only() {
    let source = r##"
//! Links to [`crate::server`] in docs are not imports.
use crate::{attest::Peer, audit::{AuditLog, Metrics}, self};
use crate::token::KeyRing;
/* crate::cli in a block comment /* nested */ crate::cli */
pub(crate) fn f() -> &'static str {
    let _ = crate::clock::rfc3339(0);
    crate::install_crypto_provider();
    let _ = '"'; let _: &'static str = "crate::config";
    let _ = r#"crate::model "quoted" "#;
    macro_rules! m { () => { $crate::policy::X } }
    "done"
}
"##;
    let found: Vec<(String, usize)> = crate_paths(source);
    let names: Vec<&str> = found.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        names,
        [
            "attest",
            "audit",
            "self",
            "token",
            "clock",
            "install_crypto_provider"
        ]
    );
    assert_eq!(found.first().map(|(_, line)| *line), Some(3));
    assert_eq!(found.get(4).map(|(_, line)| *line), Some(7));
}

/// The graph of `src/`: one node per module `src/lib.rs` declares.
fn graph_of(root: &Path) -> Graph {
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let modules: BTreeSet<String> = blank_non_code(&lib)
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("pub(crate) mod "))
                .or_else(|| line.strip_prefix("mod "))?;
            Some(rest.strip_suffix(';')?.trim().to_owned())
        })
        .collect();
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for file in files {
        let relative = file.strip_prefix(root).unwrap();
        let Some(from) = module_of(relative).filter(|m| modules.contains(m)) else {
            continue;
        };
        let source = std::fs::read_to_string(&file).unwrap();
        for (to, line) in crate_paths(&source) {
            if to == from || !modules.contains(&to) {
                continue;
            }
            let site = (relative.display().to_string(), line);
            graph
                .entry(from.clone())
                .or_default()
                .entry(to)
                .or_insert(site);
        }
    }
    graph
}

/// Every `.rs` file under `dir`, recursively.
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

/// The top-level module a file under `src/` belongs to: `src/x.rs` and
/// `src/x/…` are `x`; the crate root and the binary belong to none.
fn module_of(relative: &Path) -> Option<String> {
    let mut parts = relative.strip_prefix("src").ok()?.components();
    let first = parts.next()?.as_os_str().to_str()?;
    if parts.next().is_some() {
        return Some(first.to_owned());
    }
    match first.strip_suffix(".rs")? {
        "lib" | "main" => None,
        name => Some(name.to_owned()),
    }
}

/// The first name of every `crate::` path in code, with its line: for a
/// group (`crate::{a::X, b}`) the first name of each member.
fn crate_paths(source: &str) -> Vec<(String, usize)> {
    let code = blank_non_code(source);
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = code.get(at..).and_then(|rest| rest.find("crate")) {
        let start = at + offset;
        at = start + "crate".len();
        let before = start.checked_sub(1).and_then(|i| bytes.get(i)).copied();
        if before.is_some_and(|b| b == b'$' || is_ident(b)) {
            continue;
        }
        let rest = code.get(at..).unwrap_or_default().trim_start();
        let Some(rest) = rest.strip_prefix("::") else {
            continue;
        };
        let line = code.get(..start).unwrap_or_default().matches('\n').count() + 1;
        let rest = rest.trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            for member in top_level_members(group) {
                found.push((leading_ident(member), line));
            }
        } else {
            found.push((leading_ident(rest), line));
        }
    }
    found.retain(|(name, _)| !name.is_empty());
    found
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn leading_ident(s: &str) -> String {
    s.trim_start()
        .bytes()
        .take_while(|b| is_ident(*b))
        .map(char::from)
        .collect()
}

/// The comma-separated members of a `{…}` group up to its closing brace
/// (`group` starts just after the opening one); nested groups stay whole.
fn top_level_members(group: &str) -> Vec<&str> {
    let mut members = Vec::new();
    let (mut depth, mut from) = (0usize, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                members.push(&group[from..i]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                members.push(&group[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    members
}

/// `source` with comments, string and character literals replaced by
/// spaces (newlines kept, so line numbers stay right).
fn blank_non_code(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while let Some(&c) = chars.get(i).filter(|c| **c != '\n') {
                blank(&mut out, c);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while let Some(&c) = chars.get(i) {
                let next = chars.get(i + 1).copied();
                if c == '/' && next == Some('*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c == '*' && next == Some('/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c);
                    i += 1;
                }
            }
        } else if c == 'r'
            && matches!(next, Some('"' | '#'))
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"…", r#"…"#, … (or an identifier like `r#type`).
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let body_start = i + 2 + hashes;
            let body: String = chars[body_start..].iter().collect();
            let end = body.find(&close).map_or(chars.len(), |at| {
                body_start + body[..at].chars().count() + close.len()
            });
            for &c in &chars[i..end.min(chars.len())] {
                blank(&mut out, c);
            }
            i = end;
        } else if c == '"' {
            blank(&mut out, c);
            i += 1;
            while let Some(&c) = chars.get(i) {
                blank(&mut out, c);
                i += 1;
                if c == '\\' {
                    if let Some(&escaped) = chars.get(i) {
                        blank(&mut out, escaped);
                        i += 1;
                    }
                } else if c == '"' {
                    break;
                }
            }
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            let literal_len = match (next, chars.get(i + 2)) {
                (Some('\\'), _) => chars[i + 1..]
                    .iter()
                    .skip(2)
                    .position(|c| *c == '\'')
                    .map(|p| p + 4),
                (Some(_), Some('\'')) => Some(3),
                _ => None,
            };
            match literal_len {
                Some(len) => {
                    for &c in chars.iter().skip(i).take(len) {
                        blank(&mut out, c);
                    }
                    i += len;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// One cycle per tangle of modules (a strongly connected group of two or
/// more), as the modules along it with the first repeated last: the
/// shortest cycle through the group's first module, so the report names
/// the fewest edges to cut.
fn find_cycles(graph: &Graph) -> Vec<Vec<String>> {
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(node) = todo.pop() {
            for next in graph.get(&node).into_iter().flat_map(BTreeMap::keys) {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|n| (n, reach(n))).collect();
    let mut covered = BTreeSet::new();
    let mut cycles = Vec::new();
    for start in graph.keys() {
        if covered.contains(start) || !reaches[start].contains(start) {
            continue;
        }
        covered.extend(
            reaches[start]
                .iter()
                .filter(|m| reaches[*m].contains(start))
                .cloned(),
        );
        cycles.push(shortest_cycle(graph, start));
    }
    cycles
}

/// The shortest path from `start` back to itself (breadth first); `start`
/// must be on a cycle.
fn shortest_cycle(graph: &Graph, start: &str) -> Vec<String> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            if next == start {
                let mut cycle = vec![start.to_owned(), node.to_owned()];
                let mut at = node;
                while at != start {
                    at = came_from[at];
                    cycle.push(at.to_owned());
                }
                cycle.reverse();
                return cycle;
            }
            if !came_from.contains_key(next.as_str()) {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    Vec::new()
}

/// One line per edge of `cycle`: `from -> to (file:line)`.
fn describe(graph: &Graph, cycle: &[String]) -> String {
    cycle
        .windows(2)
        .map(|pair| {
            let (from, to) = (&pair[0], &pair[1]);
            let (file, line) = &graph[from][to];
            format!("  {from} -> {to} ({file}:{line})")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
