//! The shape of the library: dependencies between modules point one way.
//!
//! Reads every file under `src/` and draws two graphs from its `crate::`, `super::` and
//! `self::` paths (comments and `#[cfg(test)]` modules left out, since neither is a
//! dependency of the library): one between the top-level modules (`dicom`, `model`,
//! `pipeline`, ...) and one between the sibling files of each module (`config::rules`,
//! `config::settings`, ...). Both must be free of cycles, and only the front end (`cli`) may
//! be imported by nobody. A failure names the cycle and one file and line for each edge of
//! it, so the import to move is found at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One dependency: from module to module, with where it was seen.
#[derive(Debug, Clone)]
struct Edge {
    from: String,
    to: String,
    at: String,
}

/// A source file: its module path (`["config", "rules"]`) and its code without comments
/// and test modules.
struct Source {
    module: Vec<String>,
    file: PathBuf,
    code: Vec<(usize, String)>,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|file| {
            let relative = file.strip_prefix(&root).ok()?.with_extension("");
            let mut module: Vec<String> = relative
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if module.last().map(String::as_str) == Some("mod") {
                module.pop();
            }
            if module == ["lib"] || module == ["main"] || module.is_empty() {
                return None;
            }
            let text = std::fs::read_to_string(&file).ok()?;
            Some(Source {
                module,
                code: library_code(&text),
                file,
            })
        })
        .collect()
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The lines of `text` that are library code: line comments removed, and everything from a
/// `#[cfg(test)]` attribute to the end of the item it guards skipped (by brace depth).
fn library_code(text: &str) -> Vec<(usize, String)> {
    let mut code = Vec::new();
    let mut skipping = false;
    let mut depth = 0i32;
    let mut entered = false;
    for (number, line) in text.lines().enumerate() {
        let line = match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        if line.trim_start().starts_with("#[cfg(test)]") {
            skipping = true;
            depth = 0;
            entered = false;
            continue;
        }
        if skipping {
            for c in line.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        entered = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            // An item without braces (`#[cfg(test)] use ...;`) ends at its semicolon.
            if (entered && depth <= 0) || (!entered && line.trim_end().ends_with(';')) {
                skipping = false;
            }
            continue;
        }
        code.push((number + 1, line.to_owned()));
    }
    code
}

/// Every module path a line refers to, absolute (`["explain", "quality", "brain_mask"]`),
/// resolving `super::` and `self::` against `module` (the file's own module), and the
/// groups of `use crate::{a::x, b::{y, z}}`.
fn referenced_paths(module: &[String], line: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", module[..module.len().saturating_sub(1)].to_vec()),
        ("self::", module.to_vec()),
    ] {
        let mut rest = line;
        while let Some(at) = rest.find(prefix) {
            let preceded = rest[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            rest = &rest[at + prefix.len()..];
            if preceded {
                continue;
            }
            let mut base = base.clone();
            let mut tail = rest;
            // `super::super::x`
            while let Some(stripped) = tail.strip_prefix("super::") {
                base.pop();
                tail = stripped;
            }
            for path in expand(tail) {
                let mut full = base.clone();
                full.extend(path);
                paths.push(full);
            }
        }
    }
    paths
}

/// The paths written at the start of `text`: `a::b::C`, or a group `{a::x, b::{y, z}}`.
fn expand(text: &str) -> Vec<Vec<String>> {
    let text = text.trim_start();
    if let Some(group) = text.strip_prefix('{') {
        let mut depth = 1;
        let mut end = group.len();
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        return split_top_level(&group[..end])
            .into_iter()
            .flat_map(expand)
            .collect();
    }
    let mut path = Vec::new();
    let mut rest = text;
    loop {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            break;
        }
        rest = &rest[name.len()..];
        path.push(name);
        match rest.strip_prefix("::") {
            Some(after) if after.starts_with('{') => {
                return expand(after)
                    .into_iter()
                    .map(|tail| path.iter().cloned().chain(tail).collect())
                    .collect();
            }
            Some(after) => rest = after,
            None => break,
        }
    }
    if path.is_empty() {
        Vec::new()
    } else {
        vec![path]
    }
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    items
}

/// The modules of the crate: every source's module path and its parents.
fn module_set(sources: &[Source]) -> BTreeSet<Vec<String>> {
    let mut modules = BTreeSet::new();
    for source in sources {
        for length in 1..=source.module.len() {
            modules.insert(source.module[..length].to_vec());
        }
    }
    modules
}

/// `pub use child::Name` lines of every module file: the child a re-exported name comes from.
fn reexports(sources: &[Source]) -> BTreeMap<(Vec<String>, String), String> {
    let mut names = BTreeMap::new();
    for source in sources.iter().filter(|s| s.file.ends_with("mod.rs")) {
        let text: String = source
            .code
            .iter()
            .map(|(_, line)| line.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        for statement in text.split(';') {
            let Some(at) = statement.find("pub use ") else {
                continue;
            };
            let used = statement[at + "pub use ".len()..].replace('\n', " ");
            let used = used.trim().trim_start_matches("self::");
            for path in expand(used) {
                if path.len() >= 2 {
                    let name = path.last().cloned().unwrap_or_default();
                    names.insert((source.module.clone(), name), path[0].clone());
                }
            }
        }
    }
    names
}

fn edges() -> (Vec<Edge>, Vec<Edge>) {
    let sources = sources();
    let modules = module_set(&sources);
    let reexported = reexports(&sources);
    let mut top = Vec::new();
    let mut siblings = Vec::new();
    for source in &sources {
        let own_top = &source.module[0];
        for (number, line) in &source.code {
            for path in referenced_paths(&source.module, line) {
                let Some(target_top) = path.first() else {
                    continue;
                };
                if !modules.contains(&vec![target_top.clone()]) {
                    continue; // a crate-root item such as `crate::panic_message`
                }
                let at = format!(
                    "{}:{}",
                    source
                        .file
                        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                        .unwrap_or(&source.file)
                        .display(),
                    number
                );
                if target_top != own_top {
                    top.push(Edge {
                        from: own_top.clone(),
                        to: target_top.clone(),
                        at: at.clone(),
                    });
                    continue;
                }
                // Within one module: which child file the path lands in, through a
                // re-export of the module file when it names an item.
                if source.module.len() < 2 || path.len() < 2 {
                    continue;
                }
                let parent = vec![own_top.clone()];
                let second = &path[1];
                let child = if modules.contains(&vec![own_top.clone(), second.clone()]) {
                    Some(second.clone())
                } else {
                    reexported.get(&(parent, second.clone())).cloned()
                };
                if let Some(child) = child
                    && child != source.module[1]
                {
                    siblings.push(Edge {
                        from: format!("{}::{}", own_top, source.module[1]),
                        to: format!("{own_top}::{child}"),
                        at,
                    });
                }
            }
        }
    }
    (top, siblings)
}

/// A cycle of `edges` if there is one, as the edges that form it.
fn find_cycle(edges: &[Edge]) -> Option<Vec<Edge>> {
    let mut next: BTreeMap<&str, Vec<&Edge>> = BTreeMap::new();
    for edge in edges {
        next.entry(edge.from.as_str()).or_default().push(edge);
    }
    // Depth-first search with colours; the stack holds the edges of the current path.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        node: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a Edge>>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a Edge>,
    ) -> Option<Vec<Edge>> {
        state.insert(node, 1);
        for edge in next.get(node).into_iter().flatten() {
            match state.get(edge.to.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = path
                        .iter()
                        .position(|e| e.from == edge.to)
                        .unwrap_or(path.len());
                    let mut cycle: Vec<Edge> = path[start..].iter().map(|e| (*e).clone()).collect();
                    cycle.push((*edge).clone());
                    return Some(cycle);
                }
                0 => {
                    path.push(edge);
                    if let Some(cycle) = visit(edge.to.as_str(), next, state, path) {
                        return Some(cycle);
                    }
                    path.pop();
                }
                _ => {}
            }
        }
        state.insert(node, 2);
        None
    }
    let nodes: Vec<&str> = next.keys().copied().collect();
    for node in nodes {
        if state.get(node).copied().unwrap_or(0) == 0
            && let Some(cycle) = visit(node, &next, &mut state, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

fn describe(cycle: &[Edge]) -> String {
    cycle
        .iter()
        .map(|e| format!("  {} -> {} ({})", e.from, e.to, e.at))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn top_level_modules_have_no_cycle() {
    let (top, _) = edges();
    assert!(
        top.len() > 20,
        "the graph should see the crate's imports, saw {} edges",
        top.len()
    );
    if let Some(cycle) = find_cycle(&top) {
        panic!("a cycle between top-level modules:\n{}", describe(&cycle));
    }
}

#[test]
fn sibling_files_have_no_cycle() {
    let (_, siblings) = edges();
    assert!(
        !siblings.is_empty(),
        "the graph should see imports between sibling files"
    );
    if let Some(cycle) = find_cycle(&siblings) {
        panic!(
            "a cycle between the files of one module:\n{}",
            describe(&cycle)
        );
    }
}

#[test]
fn only_the_front_end_is_imported_by_nobody() {
    let (top, _) = edges();
    let into_cli: Vec<&Edge> = top.iter().filter(|e| e.to == "cli").collect();
    assert!(
        into_cli.is_empty(),
        "library modules import the command-line front end:\n{}",
        into_cli
            .iter()
            .map(|e| format!("  {} -> cli ({})", e.from, e.at))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_parser_sees_grouped_and_relative_paths() {
    let module = vec!["config".to_owned(), "rules".to_owned()];
    let paths = referenced_paths(
        &module,
        "use crate::{dicom::scan::Series, model::{Manifest, probe::Probe}}; use super::settings::X;",
    );
    let mut found: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    found.sort();
    assert_eq!(
        found,
        [
            "config::settings::X",
            "dicom::scan::Series",
            "model::Manifest",
            "model::probe::Probe"
        ]
    );
    let test_module = "fn f() {}\n#[cfg(test)]\nmod tests {\n    use crate::cli;\n}\nfn g() {}";
    let kept: Vec<String> = library_code(test_module)
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    assert_eq!(kept, ["fn f() {}", "fn g() {}"]);
}
