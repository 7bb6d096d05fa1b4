//! Tidy: repository rules that keep the code base the shape it was given, checked on the real
//! repository and shown to bite on small planted trees.
//!
//! Rules:
//! - every `.rs` file under `crates/` starts with a module doc (`//!`, or
//!   `#![doc = include_str!(..)]`);
//! - no file under `crates/layercake/src` is longer than [`MAX_COMPOSER_LINES`] lines;
//! - every `crates/layercake-*` crate that implements `Backend` for a type of its own (the
//!   testkit's test doubles aside) has `tests/conformance.rs`;
//! - no text file refers to a design document outside the repository (its file name or its
//!   section marks): the repository must stand alone;
//! - an `allow` attribute carries `reason = ".."` (better: `expect` with a reason).

use std::path::{Path, PathBuf};

/// The largest composer file, in lines.
const MAX_COMPOSER_LINES: usize = 500;

/// Files the `allow` rule does not read (none today; a path here must say why).
const ALLOW_RULE_EXEMPT: [&str; 0] = [];

/// Directories never searched: build output, version control, fuzzing data.
const SKIP_DIRS: [&str; 5] = ["target", ".git", "corpus", "artifacts", "node_modules"];

/// Names of an outside design document (built here so that this file does not name it).
fn outside_doc_names() -> [String; 2] {
    let name = ["DE", "SIGN"].concat();
    [format!("{name}.md"), format!("{name} §")]
}

/// Every file under `dir` (recursively), skipping [`SKIP_DIRS`], sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name();
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                if !SKIP_DIRS.iter().any(|s| name == *s) {
                    stack.push(path);
                }
            } else if kind.is_file() && name != ".git" {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect()
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// Files under `crates/` whose first line is not a module doc.
fn missing_module_docs(root: &Path) -> Vec<String> {
    rust_files(&root.join("crates"))
        .into_iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let first = text.lines().next().unwrap_or("");
            !(first.starts_with("//!") || first.starts_with("#![doc = include_str!("))
        })
        .map(|p| format!("{}: does not start with a `//!` module doc", rel(root, &p)))
        .collect()
}

/// Composer files over [`MAX_COMPOSER_LINES`].
fn oversized_composer_files(root: &Path) -> Vec<String> {
    files(&root.join("crates/layercake/src"))
        .into_iter()
        .filter_map(|p| {
            let n = std::fs::read_to_string(&p).ok()?.lines().count();
            (n > MAX_COMPOSER_LINES).then(|| {
                format!(
                    "{}: {n} lines (at most {MAX_COMPOSER_LINES}); split it by path",
                    rel(root, &p)
                )
            })
        })
        .collect()
}

/// Whether `text` implements `Backend` for a type of its own (not the forwarding impls for
/// `Arc<B>`, `Box<B>` or references).
fn implements_backend(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start();
        let Some(rest) = l.strip_prefix("impl") else {
            return false;
        };
        let Some(i) = rest.find("Backend for ") else {
            return false;
        };
        let head = &rest[..i];
        if !(head.trim().is_empty() || head.trim_start().starts_with('<')) {
            return false;
        }
        let target = rest[i + "Backend for ".len()..].trim_start();
        !(target.starts_with("Arc<") || target.starts_with("Box<") || target.starts_with('&'))
    })
}

/// Backend crates without `tests/conformance.rs`.
fn backends_without_conformance(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root.join("crates")) else {
        return vec!["crates/: not readable".to_owned()];
    };
    let mut crates: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with("layercake-") && n != "layercake-testkit"
            })
        })
        .collect();
    crates.sort();
    crates
        .into_iter()
        .filter(|c| {
            rust_files(&c.join("src"))
                .iter()
                .any(|p| implements_backend(&std::fs::read_to_string(p).unwrap_or_default()))
        })
        .filter(|c| !c.join("tests/conformance.rs").is_file())
        .map(|c| {
            format!(
                "{}: implements Backend but has no tests/conformance.rs",
                rel(root, &c)
            )
        })
        .collect()
}

/// Text files (anywhere in the repository) that name the outside design document.
fn outside_doc_references(root: &Path) -> Vec<String> {
    let names = outside_doc_names();
    let mut out = Vec::new();
    for p in files(root) {
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue; // not text
        };
        for (n, line) in text.lines().enumerate() {
            if names.iter().any(|name| line.contains(name.as_str())) {
                out.push(format!(
                    "{}:{}: refers to a document outside the repository; state the thing itself",
                    rel(root, &p),
                    n + 1
                ));
            }
        }
    }
    out
}

/// The two spellings of an `allow` attribute (built here so that this file has none).
fn allow_openers() -> [String; 2] {
    let allow = "allow(";
    [format!("#[{allow}"), format!("#![{allow}")]
}

/// `allow` attributes (outer or inner) without `reason =`.
fn allows_without_reason(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for p in rust_files(root) {
        if ALLOW_RULE_EXEMPT.contains(&rel(root, &p).as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let [outer, inner] = allow_openers();
        for (start, _) in text
            .match_indices(outer.as_str())
            .chain(text.match_indices(inner.as_str()))
        {
            let attr_end = text[start..].find(']').map_or(text.len(), |e| start + e);
            if !text[start..attr_end].contains("reason") {
                let line = text[..start].matches('\n').count() + 1;
                out.push(format!(
                    "{}:{line}: `allow` without `reason = \"..\"` (prefer `#[expect(.., reason)]`)",
                    rel(root, &p)
                ));
            }
        }
    }
    out.sort();
    out
}

fn all_rules(root: &Path) -> Vec<String> {
    let mut v = missing_module_docs(root);
    v.extend(oversized_composer_files(root));
    v.extend(backends_without_conformance(root));
    v.extend(outside_doc_references(root));
    v.extend(allows_without_reason(root));
    v
}

#[test]
fn the_repository_is_tidy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace root");
    let broken = all_rules(root);
    assert!(
        broken.is_empty(),
        "{} tidy rule(s) broken:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

// ------------------------------------------------------------------ each rule bites

/// A planted tree that keeps every rule, and a way to break one.
struct Plant {
    dir: tempfile::TempDir,
}

impl Plant {
    fn tidy() -> Plant {
        let plant = Plant {
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        plant.write("crates/layercake/src/lib.rs", "//! The composer.\n");
        plant.write(
            "crates/layercake-core/src/lib.rs",
            "//! Contracts.\nimpl<B: Backend> Backend for Arc<B> {}\n",
        );
        plant.write(
            "crates/layercake-foo/src/lib.rs",
            "#![doc = include_str!(\"../README.md\")]\nimpl Backend for Foo {}\n",
        );
        plant.write("crates/layercake-foo/tests/conformance.rs", "//! Kit.\n");
        plant.write(
            "crates/layercake-testkit/src/lib.rs",
            "//! Doubles.\nimpl Backend for Fake {}\n",
        );
        let [outer, _] = allow_openers();
        plant.write(
            "crates/layercake/src/ok.rs",
            &format!(
                "//! Fine.\n#[expect(dead_code, reason = \"kept\")]\n{outer}\n    unused,\n    \
                 reason = \"spans lines\"\n)]\nfn f() {{}}\n"
            ),
        );
        plant.write("README.md", "# Standalone\nSee docs/architecture.md.\n");
        plant.write("target/junk.rs", &format!("no doc\n{outer}unused)]\n"));
        plant
    }

    fn write(&self, path: &str, text: &str) {
        let p = self.dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("create dirs");
        std::fs::write(p, text).expect("write a planted file");
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }
}

#[test]
fn the_planted_tree_is_tidy() {
    let plant = Plant::tidy();
    assert_eq!(all_rules(plant.root()), Vec::<String>::new());
}

#[test]
fn a_file_without_module_doc_is_caught() {
    let plant = Plant::tidy();
    plant.write("crates/layercake-foo/src/bare.rs", "use std::fmt;\n");
    assert_eq!(
        missing_module_docs(plant.root()),
        ["crates/layercake-foo/src/bare.rs: does not start with a `//!` module doc"]
    );
}

#[test]
fn an_oversized_composer_file_is_caught() {
    let plant = Plant::tidy();
    let mut text = "//! Big.\n".to_owned();
    text.push_str(&"fn f() {}\n".repeat(MAX_COMPOSER_LINES));
    plant.write("crates/layercake/src/big.rs", &text);
    // the same size elsewhere is fine
    plant.write("crates/layercake-foo/src/big.rs", &text);
    assert_eq!(
        oversized_composer_files(plant.root()),
        ["crates/layercake/src/big.rs: 501 lines (at most 500); split it by path"]
    );
}

#[test]
fn a_backend_crate_without_conformance_tests_is_caught() {
    let plant = Plant::tidy();
    plant.write(
        "crates/layercake-bar/src/backend.rs",
        "//! Bar.\n#[async_trait]\nimpl Backend for BarBackend {}\n",
    );
    assert_eq!(
        backends_without_conformance(plant.root()),
        ["crates/layercake-bar: implements Backend but has no tests/conformance.rs"]
    );
    plant.write("crates/layercake-bar/tests/conformance.rs", "//! Kit.\n");
    assert_eq!(
        backends_without_conformance(plant.root()),
        Vec::<String>::new()
    );
}

#[test]
fn a_reference_to_an_outside_document_is_caught() {
    let plant = Plant::tidy();
    let [file, section] = outside_doc_names();
    plant.write("docs/guide.md", &format!("# Guide\n\nAs {file} says.\n"));
    plant.write(
        "crates/layercake/src/x.rs",
        &format!("//! X.\n// see {section}4\n"),
    );
    assert_eq!(
        outside_doc_references(plant.root()),
        [
            "crates/layercake/src/x.rs:2: refers to a document outside the repository; state the thing itself",
            "docs/guide.md:3: refers to a document outside the repository; state the thing itself",
        ]
    );
}

#[test]
fn an_allow_without_reason_is_caught() {
    let plant = Plant::tidy();
    let [outer, inner] = allow_openers();
    plant.write(
        "xtask/src/main.rs",
        &format!("//! Chores.\n{inner}clippy::print_stdout)]\n\n{outer}dead_code)]\nfn f() {{}}\n"),
    );
    assert_eq!(
        allows_without_reason(plant.root()),
        [
            "xtask/src/main.rs:2: `allow` without `reason = \"..\"` (prefer `#[expect(.., reason)]`)",
            "xtask/src/main.rs:4: `allow` without `reason = \"..\"` (prefer `#[expect(.., reason)]`)",
        ]
    );
}
