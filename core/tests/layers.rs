//! The modules of `core/src` form layers: a module may use only modules of
//! lower layers, so the core has no dependency cycle and each layer can be
//! read, tested and changed knowing only the layers below it.
//!
//! The check reads the source files and scans them for paths: every
//! `crate::module` (including `use crate::{a, b}` groups and `$crate::` in
//! macros) and every `super::` chain that climbs to the crate root. Comments
//! (so intra-doc links), string and character literals are skipped first.
//! `lib.rs` only declares and re-exports the modules and is not checked.
//!
//! Test code (`#[cfg(test)] mod x { … }`, and the file of a
//! `#[cfg(test)] mod x;`) obeys the same rule, except that it may also use
//! `testing`, the mock components: a dependency of tests only makes no cycle
//! in the library.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The top-level modules of `core/src`, lowest layer first. Modules in one
/// layer may not use each other; a module may use itself and lower layers.
const LAYERS: &[&[&str]] = &[
    // Leaves: depend on no other module of the crate.
    &["event", "capability", "memory", "telemetry"],
    // The queue between components and the `Output` producers push into.
    &["edge"],
    // Disk buffers: events in segment files (uses events and `WhenFull`).
    &["buffer"],
    // What a component is: traits, contexts, sink options.
    &["component"],
    // Built on what a component is: its registration, the one Service of
    // every sink, the loop of polling sources.
    &["registry", "batch_sink", "polling"],
    &["config"],
    &["privileges"],
    &["topology"],
    &["api"],
    &["agent"],
    // Mock components for tests (the `test-util` feature).
    &["testing"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every top-level module of `src` with its files: `x.rs` or `x/**.rs`.
fn modules() -> Vec<(String, Vec<PathBuf>)> {
    let mut found = Vec::new();
    let mut entries: Vec<PathBuf> = fs::read_dir(src_dir())
        .expect("core/src is readable")
        .map(|e| e.expect("core/src entry is readable").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        if path.is_dir() {
            let mut files = Vec::new();
            rust_files(&path, &mut files);
            found.push((name, files));
        } else if path.extension().is_some_and(|e| e == "rs") && name != "lib" {
            found.push((name, vec![path]));
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("module folder is readable") {
        let path = entry.expect("module folder entry is readable").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// How many path segments name the file's module below the crate root
/// (`topology/mod.rs` → 1, `topology/stack.rs` → 2): the number of
/// `super::` it takes to reach the root.
fn depth(file: &Path) -> usize {
    let relative = file.strip_prefix(src_dir()).expect("file is under core/src");
    let segments = relative.components().count();
    if file.file_name().is_some_and(|n| n == "mod.rs") {
        segments - 1
    } else {
        segments
    }
}

/// The source without comments, string literals and character literals,
/// which are replaced by a space, so that text in them is not taken for a path.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            out.push(' ');
        } else if c == '/' && next == Some('*') {
            // Block comments nest in Rust.
            let mut level = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    level += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    level -= 1;
                    i += 2;
                    if level == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (i == 0 || !is_ident(chars[i - 1]) || (chars[i - 1] == 'b' && (i < 2 || !is_ident(chars[i - 2]))))
            && matches!(next, Some('"' | '#'))
            && raw_string_end(&chars, i + 1).is_some()
        {
            i = raw_string_end(&chars, i + 1).unwrap_or(chars.len());
            out.push(' ');
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(' ');
        } else if c == '\'' && next == Some('\\') {
            // An escaped character literal: '\n', '\'', '\u{1F600}'.
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push(' ');
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 3;
            out.push(' ');
        } else {
            // Anything else, lifetimes included.
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Where a raw string starting with `#`s or `"` at `start` ends (the index
/// after its closing quote and hashes), if it is one.
fn raw_string_end(chars: &[char], start: usize) -> Option<usize> {
    let hashes = chars[start..].iter().take_while(|c| **c == '#').count();
    if chars.get(start + hashes) != Some(&'"') {
        return None;
    }
    let mut i = start + hashes + 1;
    while i < chars.len() {
        if chars[i] == '"' && chars[i + 1..].iter().take(hashes).filter(|c| **c == '#').count() == hashes {
            return Some(i + 1 + hashes);
        }
        i += 1;
    }
    Some(chars.len())
}

/// The crate's top-level modules that `tokens` name by path: after
/// `crate::` (or `$crate::`), or after `depth` or more `super::`.
fn referenced(tokens: &[String], depth: usize, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        let starts_path = i == 0 || tokens[i - 1] != "::";
        let root_end = if tokens[i] == "crate" && starts_path {
            Some(i + 1)
        } else if tokens[i] == "super" && starts_path {
            let mut j = i;
            let mut supers = 0;
            while tokens.get(j).is_some_and(|t| t == "super") && tokens.get(j + 1).is_some_and(|t| t == "::") {
                supers += 1;
                j += 2;
            }
            // `j` points after the last `super::`; step back onto its `::`.
            (supers >= depth && supers > 0).then(|| j - 1)
        } else {
            None
        };
        if let Some(end) = root_end {
            if tokens.get(end).is_some_and(|t| t == "::") {
                collect_heads(tokens, end + 1, known, &mut found);
            }
        }
        i += 1;
    }
    found
}

/// The first segment after a path root: one name, or each item of a `{ }` group.
fn collect_heads(tokens: &[String], at: usize, known: &BTreeSet<String>, found: &mut BTreeSet<String>) {
    match tokens.get(at).map(String::as_str) {
        Some("{") => {
            let mut level = 0;
            let mut expect_head = true;
            for token in &tokens[at..] {
                match token.as_str() {
                    "{" => {
                        level += 1;
                        expect_head = level == 1;
                    }
                    "}" => {
                        level -= 1;
                        if level == 0 {
                            break;
                        }
                    }
                    "," if level == 1 => expect_head = true,
                    name if expect_head => {
                        if known.contains(name) {
                            found.insert(name.to_owned());
                        }
                        expect_head = false;
                    }
                    _ => {}
                }
            }
        }
        Some(name) if known.contains(name) => {
            found.insert(name.to_owned());
        }
        _ => {}
    }
}

/// Identifiers, `::`, and every other character on its own.
fn tokenize(code: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut ident = String::from(c);
            while let Some(&n) = chars.peek() {
                if !(n.is_alphanumeric() || n == '_') {
                    break;
                }
                ident.push(n);
                chars.next();
            }
            tokens.push(ident);
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            tokens.push("::".to_owned());
        } else if !c.is_whitespace() && c != '$' {
            // `$crate` counts as `crate`; `$` is dropped.
            tokens.push(c.to_string());
        }
    }
    tokens
}

/// The module every test may use, whatever its layer.
const TEST_SUPPORT: &str = "testing";

/// A file's tokens, split into library code and `#[cfg(test)] mod x { … }`
/// blocks, and the files of its `#[cfg(test)] mod x;` declarations.
#[derive(Default)]
struct Split {
    library: Vec<String>,
    tests: Vec<String>,
    test_files: Vec<PathBuf>,
}

const CFG_TEST: [&str; 7] = ["#", "[", "cfg", "(", "test", ")", "]"];

fn split_tests(tokens: Vec<String>, file: &Path) -> Split {
    let mut split = Split::default();
    let mut i = 0;
    while i < tokens.len() {
        if tokens.len() - i >= CFG_TEST.len() && tokens[i..i + CFG_TEST.len()].iter().eq(CFG_TEST.iter()) {
            let mut j = i + CFG_TEST.len();
            // Other attributes and a visibility may stand between it and `mod`.
            while tokens.get(j).is_some_and(|t| t == "#") && tokens.get(j + 1).is_some_and(|t| t == "[") {
                j = matching(&tokens, j + 1, "[", "]") + 1;
            }
            if tokens.get(j).is_some_and(|t| t == "pub") {
                j += 1;
                if tokens.get(j).is_some_and(|t| t == "(") {
                    j = matching(&tokens, j, "(", ")") + 1;
                }
            }
            if tokens.get(j).is_some_and(|t| t == "mod") {
                if let Some(name) = tokens.get(j + 1) {
                    match tokens.get(j + 2).map(String::as_str) {
                        Some("{") => {
                            let end = matching(&tokens, j + 2, "{", "}");
                            split.tests.extend(tokens[j + 3..end].iter().cloned());
                            i = end + 1;
                            continue;
                        }
                        Some(";") => {
                            let dir = module_dir(file);
                            split.test_files.push(dir.join(format!("{name}.rs")));
                            split.test_files.push(dir.join(name));
                        }
                        _ => {}
                    }
                }
            }
        }
        split.library.push(tokens[i].clone());
        i += 1;
    }
    split
}

/// The index of the token closing the group opened at `open_at`.
fn matching(tokens: &[String], open_at: usize, open: &str, close: &str) -> usize {
    let mut level = 0;
    for (k, token) in tokens.iter().enumerate().skip(open_at) {
        if token == open {
            level += 1;
        } else if token == close {
            level -= 1;
            if level == 0 {
                return k;
            }
        }
    }
    tokens.len() - 1
}

/// The folder holding the files of the modules that `file` declares.
fn module_dir(file: &Path) -> PathBuf {
    if file.file_name().is_some_and(|n| n == "mod.rs") {
        file.parent().expect("mod.rs is in a folder").to_path_buf()
    } else {
        file.with_extension("")
    }
}

#[test]
fn core_modules_form_layers_without_cycles() {
    let modules = modules();
    let known: BTreeSet<String> = modules.iter().map(|(name, _)| name.clone()).collect();
    let mut problems = Vec::new();
    for name in &known {
        if layer_of(name).is_none() {
            problems.push(format!(
                "module `{name}` is in no layer: add it to LAYERS in {}",
                file!()
            ));
        }
    }
    for layer in LAYERS {
        for name in *layer {
            if !known.contains(*name) {
                problems.push(format!("LAYERS names `{name}`, which is not a module of core/src"));
            }
        }
    }
    // Parse every file first: a file is test code when its parent says so.
    let mut parsed = Vec::new();
    let mut test_only: Vec<PathBuf> = Vec::new();
    for (module, files) in &modules {
        for file in files {
            let source = fs::read_to_string(file).expect("source file is readable");
            let split = split_tests(tokenize(&code_only(&source)), file);
            test_only.extend(split.test_files.iter().cloned());
            parsed.push((module, file, split));
        }
    }
    for (module, file, split) in parsed {
        let Some(own) = layer_of(module) else { continue };
        let is_test_file = test_only.iter().any(|t| file.starts_with(t));
        let depth = depth(file);
        let (library, tests) = if is_test_file {
            (
                BTreeSet::new(),
                referenced(&[split.library, split.tests].concat(), depth, &known),
            )
        } else {
            // Inside `mod tests { }`, it takes one more `super::` to reach the root.
            (
                referenced(&split.library, depth, &known),
                referenced(&split.tests, depth + 1, &known),
            )
        };
        let uses = library
            .into_iter()
            .map(|m| (m, false))
            .chain(tests.into_iter().map(|m| (m, true)));
        for (used, in_tests) in uses {
            if used == *module || (in_tests && used == TEST_SUPPORT) {
                continue;
            }
            let Some(theirs) = layer_of(&used) else { continue };
            if theirs >= own {
                problems.push(format!(
                    "{}: `{module}` (layer {own}) uses `{used}` (layer {theirs}){}; only lower layers may be used",
                    file.strip_prefix(src_dir()).unwrap_or(file).display(),
                    if in_tests { " in tests" } else { "" },
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "core/src layering broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn scanner_finds_paths_and_skips_comments_and_strings() {
    let known: BTreeSet<String> = ["config", "event", "topology", "registry", "api"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let code = code_only(
        r##"
        //! See [`crate::api`] for the HTTP side.
        /// Links to [`crate::registry`] are documentation, not use.
        /* a block comment naming crate::api /* nested crate::api */ still comment crate::api */
        use crate::{event::{Event, EventKinds}, config::BatchConfig};
        use super::super::topology::Output;
        fn f<'a>(x: &'a str) -> char { let _ = "crate::api"; let _ = r#"crate::api"#; let _ = '"'; 'c' }
        macro_rules! m { () => { $crate::registry::Registry::default() } }
        "##,
    );
    let found = referenced(&tokenize(&code), 2, &known);
    let expected: BTreeSet<String> = ["config", "event", "topology", "registry"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(found, expected);
    // One `super::` from a file two levels down stays inside its module.
    let tokens = |code: &str| tokenize(&code_only(code));
    assert!(referenced(&tokens("use super::config;"), 2, &known).is_empty());
    assert_eq!(referenced(&tokens("use super::config;"), 1, &known).len(), 1);
}

#[test]
fn test_code_is_told_apart() {
    let file = src_dir().join("topology/mod.rs");
    let code = tokenize(&code_only(
        "use crate::event::Event;\n\
         #[cfg(test)]\n#[allow(dead_code)]\nmod tests { use crate::testing; }\n\
         #[cfg(test)]\nmod more;\n\
         fn after() {}",
    ));
    let split = split_tests(code, &file);
    assert_eq!(split.tests, ["use", "crate", "::", "testing", ";"]);
    assert!(split.library.contains(&"after".to_owned()));
    assert!(!split.library.contains(&"testing".to_owned()));
    assert_eq!(
        split.test_files,
        [src_dir().join("topology/more.rs"), src_dir().join("topology/more")]
    );
}
