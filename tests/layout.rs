//! The shape of the source tree: one room per concern. No source file is
//! over 400 lines (a longer one is two concerns), and no module imports,
//! directly or through others, a module that imports it back.
//!
//! A module is a file under `src/`; a reference is any `crate::…` or
//! `super::…` path in its code outside its `#[cfg(test)]` part, resolved to
//! the deepest module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 400;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` → `a::b`; `src/a/mod.rs` → `a`; `src/lib.rs` → ``.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a file without comments and without its test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module path a file's code names through `crate::` or `super::`.
fn references(module: &str, code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent(module))] {
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let mut path = base.clone();
            let mut tail = rest;
            loop {
                let end = tail
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                if end == 0 {
                    break;
                }
                path.push(tail[..end].to_owned());
                match tail[end..].strip_prefix("::") {
                    Some(next) => tail = next,
                    None => break,
                }
            }
            out.push(path);
        }
    }
    out
}

/// The module `super` names from `module`'s code: in `a/b.rs` and in
/// `a/b/mod.rs` alike, `a`.
fn parent(module: &str) -> Vec<String> {
    let mut parts: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    parts.pop();
    parts
}

/// Which modules each module references.
type Edges = BTreeMap<String, BTreeSet<String>>;

fn graph() -> (Edges, Vec<(String, usize)>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut edges: Edges = BTreeMap::new();
    let mut long = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines = text.lines().count();
        if lines > MAX_LINES {
            long.push((
                file.strip_prefix(&src).unwrap().display().to_string(),
                lines,
            ));
        }
        let module = module_of(&src, file);
        for path in references(&module, &code(&text)) {
            // The deepest module the path names.
            let target = (0..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|p| modules.contains(p))
                .unwrap_or_default();
            if target != module && !target.is_empty() {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
        edges.entry(module).or_default();
    }
    (edges, long)
}

fn find_cycle(edges: &Edges) -> Option<Vec<String>> {
    // 0 unvisited, 1 on the stack, 2 done.
    fn visit(
        node: &str,
        edges: &Edges,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(node, edges, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn no_source_file_is_over_400_lines() {
    let (_, long) = graph();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let (edges, _) = graph();
    if let Some(cycle) = find_cycle(&edges) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_checker_sees_references_and_cycles() {
    // The checker itself: a reference through `super::` and one through
    // `crate::` are found, and a two-module cycle is reported.
    let refs = references(
        "endpoint::imds",
        "use super::token::X;\nuse crate::credentials::refresh::Snapshot;",
    );
    assert!(refs.contains(&vec!["endpoint".into(), "token".into(), "X".into()]));
    assert!(refs.contains(&vec![
        "credentials".into(),
        "refresh".into(),
        "Snapshot".into()
    ]));
    let mut edges = BTreeMap::new();
    edges.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    edges.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        find_cycle(&edges),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
    edges.insert("b".to_owned(), BTreeSet::new());
    assert_eq!(find_cycle(&edges), None);
    assert_eq!(
        code("let a = 1; // crate::x\n#[cfg(test)]\nuse crate::y;"),
        "let a = 1; "
    );
}
