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
//! - an `allow` attribute carries `reason = ".."` (better: `expect` with a reason);
//! - every `impl Backend for W` where `W` wraps another backend (`Arc<B>`, `Box<B>`, or a
//!   struct with a backend field, e.g. the testkit's fault and recording wrappers) defines every
//!   method of the `Backend` trait (read with `syn` from `crates/layercake-core/src/backend.rs`),
//!   so that none silently falls back to the trait's default instead of the inner backend;
//! - every bullet under a `# Behavior` heading of the `Backend` trait's docs is the bullet of a
//!   conformance case (`Conformance::cases()`), and every case's bullet is one of them; the
//!   contract section of `docs/guides/add-a-backend.md` quotes the same bullets.

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

// ------------------------------------------------------------------ forwarding wrappers

/// Where the `Backend` trait is defined.
const BACKEND_TRAIT_FILE: &str = "crates/layercake-core/src/backend.rs";

/// Wrappers that leave some `Backend` methods to the trait's defaults on purpose: (file, type,
/// why).
const FORWARDING_EXEMPT: [(&str, &str, &str); 1] = [(
    "crates/layercake-testkit/src/conformance.rs",
    "Panicky",
    "a double whose `get` panics: the defaults (which call `get`) are part of what it tests",
)];

/// The names of the `Backend` trait's methods, in declaration order.
fn backend_methods(root: &Path) -> Result<Vec<String>, String> {
    let path = root.join(BACKEND_TRAIT_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{BACKEND_TRAIT_FILE}: {e}"))?;
    let file = syn::parse_file(&text).map_err(|e| format!("{BACKEND_TRAIT_FILE}: {e}"))?;
    file.items
        .iter()
        .find_map(|item| match item {
            syn::Item::Trait(t) if t.ident == "Backend" => Some(
                t.items
                    .iter()
                    .filter_map(|i| match i {
                        syn::TraitItem::Fn(f) => Some(f.sig.ident.to_string()),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        })
        .ok_or_else(|| format!("{BACKEND_TRAIT_FILE}: no `trait Backend`"))
}

/// The identifiers of the paths in a syntax tree (type names, trait bounds).
#[derive(Default)]
struct PathIdents(Vec<String>);

impl<'a> syn::visit::Visit<'a> for PathIdents {
    fn visit_path_segment(&mut self, s: &'a syn::PathSegment) {
        self.0.push(s.ident.to_string());
        syn::visit::visit_path_segment(self, s);
    }
}

/// The structs and `Backend` impls of one file.
#[derive(Default)]
struct BackendImpls {
    /// Structs that hold a backend: a field or type parameter naming `Backend`,
    /// `DynBackend` or a type whose name ends in `Backend`.
    holders: Vec<String>,
    /// `(self type, the self type's generic arguments, methods defined)` of each
    /// `impl Backend for …`.
    impls: Vec<(String, Vec<String>, Vec<String>)>,
}

impl<'a> syn::visit::Visit<'a> for BackendImpls {
    fn visit_item_struct(&mut self, s: &'a syn::ItemStruct) {
        let mut idents = PathIdents::default();
        syn::visit::visit_fields(&mut idents, &s.fields);
        syn::visit::visit_generics(&mut idents, &s.generics);
        if idents.0.iter().any(|i| i.ends_with("Backend")) {
            self.holders.push(s.ident.to_string());
        }
        syn::visit::visit_item_struct(self, s);
    }

    fn visit_item_impl(&mut self, i: &'a syn::ItemImpl) {
        let is_backend = i
            .trait_
            .as_ref()
            .and_then(|(_, path, _)| path.segments.last())
            .is_some_and(|s| s.ident == "Backend");
        if let (true, syn::Type::Path(ty)) = (is_backend, &*i.self_ty)
            && let Some(last) = ty.path.segments.last()
        {
            let methods = i
                .items
                .iter()
                .filter_map(|item| match item {
                    syn::ImplItem::Fn(f) => Some(f.sig.ident.to_string()),
                    _ => None,
                })
                .collect();
            let mut args = PathIdents::default();
            syn::visit::visit_path_arguments(&mut args, &last.arguments);
            self.impls.push((last.ident.to_string(), args.0, methods));
        }
        syn::visit::visit_item_impl(self, i);
    }
}

/// `impl Backend for W` blocks where `W` wraps another backend (`Arc<B>`, `Box<B>`, or a
/// struct holding one) and does not define every method of the trait: a method left to the
/// trait's default stops being forwarded (the inner backend's own `fill`, tombstones, bulk
/// calls are silently replaced by the default's loops).
fn wrappers_not_forwarding(root: &Path) -> Vec<String> {
    let methods = match backend_methods(root) {
        Ok(m) => m,
        Err(e) => return vec![e],
    };
    let mut out = Vec::new();
    for p in rust_files(root) {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        if !text.contains("Backend for ") {
            continue;
        }
        let file = match syn::parse_file(&text) {
            Ok(f) => f,
            Err(e) => {
                out.push(format!("{}: cannot be parsed: {e}", rel(root, &p)));
                continue;
            }
        };
        let mut found = BackendImpls::default();
        syn::visit::Visit::visit_file(&mut found, &file);
        for (ty, args, defined) in &found.impls {
            let wraps =
                ((ty == "Arc" || ty == "Box") && !args.is_empty()) || found.holders.contains(ty);
            let exempt = FORWARDING_EXEMPT
                .iter()
                .any(|(f, t, _)| *f == rel(root, &p) && t == ty);
            if !wraps || exempt {
                continue;
            }
            let missing: Vec<String> = methods
                .iter()
                .filter(|m| !defined.contains(m))
                .map(|m| format!("`{m}`"))
                .collect();
            if !missing.is_empty() {
                out.push(format!(
                    "{}: `impl Backend for {ty}` wraps a backend but does not forward {}",
                    rel(root, &p),
                    missing.join(", ")
                ));
            }
        }
    }
    out
}

// ------------------------------------------------------------------ contract bullets and cases

/// The guide that quotes the contract, in its "## The contract" section.
const CONTRACT_GUIDE: &str = "docs/guides/add-a-backend.md";

/// The bullets of the "## The contract" section of a Markdown text.
fn guide_bullets(text: &str) -> Vec<String> {
    let mut in_section = false;
    bullets(text.lines().map(|line| {
        if line.starts_with("## ") {
            in_section = line == "## The contract";
            return None;
        }
        in_section.then_some(line)
    }))
}

/// The conformance case that checks the suite's own configuration, not a contract bullet.
const CONFIGURATION_CASE: &str = "configuration";

/// The bullets (`- …` and their continuation lines, indented by two spaces) of a run of
/// lines: `Some(line)` is a line of a section that holds bullets, `None` any other line (it
/// ends the bullet in progress).
fn bullets<'a>(lines: impl Iterator<Item = Option<&'a str>>) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in lines {
        match line {
            Some(l) if l.starts_with("- ") => out.extend(current.replace(l[2..].to_owned())),
            Some(l) if l.starts_with("  ") && current.is_some() => {
                if let Some(c) = current.as_mut() {
                    c.push(' ');
                    c.push_str(l.trim());
                }
            }
            _ => out.extend(current.take()),
        }
    }
    out.extend(current);
    out
}

/// The bullets under the `# Behavior` headings of the doc comments in `text`, in order.
fn behavior_bullets(text: &str) -> Vec<String> {
    let mut in_section = false;
    bullets(text.lines().map(|line| {
        let Some(doc) = line.trim_start().strip_prefix("///") else {
            in_section = false;
            return None;
        };
        let doc = doc.strip_prefix(' ').unwrap_or(doc);
        if doc.starts_with('#') {
            in_section = doc.starts_with("# Behavior");
            return None;
        }
        in_section.then_some(doc)
    }))
}

/// A bullet as plain text: no backticks, links reduced to their text, spaces collapsed.
fn plain(text: &str) -> String {
    let text = text.replace('`', "");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        out.push_str(&after[..close]);
        rest = &after[close + 1..];
        if rest.starts_with('(')
            && let Some(end) = rest.find(')')
        {
            rest = &rest[end + 1..];
        }
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Contract bullets of the `Backend` trait without a conformance case, cases whose bullet is
/// not in the contract, and differences between the contract and the guide that quotes it.
/// `cases` are `(name, bullet)`, as the conformance suite lists them.
fn contract_and_cases_apart(root: &Path, cases: &[(&str, &str)]) -> Vec<String> {
    let text = match std::fs::read_to_string(root.join(BACKEND_TRAIT_FILE)) {
        Ok(t) => t,
        Err(e) => return vec![format!("{BACKEND_TRAIT_FILE}: {e}")],
    };
    let bullets: Vec<String> = behavior_bullets(&text).iter().map(|b| plain(b)).collect();
    let mut out = Vec::new();
    for b in &bullets {
        if !cases.iter().any(|(_, cb)| plain(cb) == *b) {
            out.push(format!(
                "{BACKEND_TRAIT_FILE}: the contract bullet \"{b}\" has no conformance case"
            ));
        }
    }
    let guide = std::fs::read_to_string(root.join(CONTRACT_GUIDE)).unwrap_or_default();
    let quoted: Vec<String> = guide_bullets(&guide).iter().map(|b| plain(b)).collect();
    for b in bullets.iter().filter(|b| !quoted.contains(b)) {
        out.push(format!(
            "{CONTRACT_GUIDE}: \"## The contract\" does not quote the bullet \"{b}\""
        ));
    }
    for q in quoted.iter().filter(|q| !bullets.contains(q)) {
        out.push(format!(
            "{CONTRACT_GUIDE}: \"## The contract\" quotes \"{q}\", which is not a bullet of the \
             `Backend` trait"
        ));
    }
    for (name, cb) in cases {
        if *name != CONFIGURATION_CASE && !bullets.contains(&plain(cb)) {
            out.push(format!(
                "conformance case `{name}` checks \"{cb}\", which is not a `# Behavior` bullet of \
                 the `Backend` trait (word for word)"
            ));
        }
    }
    out
}

/// The conformance cases of a planted tree.
const PLANTED_CASES: [(&str, &str); 2] = [
    ("configuration", "the suite is configured"),
    ("miss", "a key never written is a miss: Ok(None)"),
];

fn all_rules(root: &Path) -> Vec<String> {
    rules(root, &layercake_testkit::conformance::Conformance::cases())
}

fn rules(root: &Path, cases: &[(&str, &str)]) -> Vec<String> {
    let mut v = missing_module_docs(root);
    v.extend(oversized_composer_files(root));
    v.extend(backends_without_conformance(root));
    v.extend(outside_doc_references(root));
    v.extend(allows_without_reason(root));
    v.extend(wrappers_not_forwarding(root));
    v.extend(contract_and_cases_apart(root, cases));
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
        plant.write("crates/layercake-core/src/lib.rs", "//! Contracts.\n");
        plant.write(
            "crates/layercake-core/src/backend.rs",
            "//! The trait.\npub trait Backend {\n    /// Read.\n    ///\n    /// # Behavior\n    ///\n    \
             /// - a key never written is a miss:\n    ///   `Ok(None)`\n    fn get(&self);\n    \
             fn set(&self) {}\n}\nimpl<B: Backend> Backend for Arc<B> {\n    fn get(&self) {\n        \
             (**self).get()\n    }\n    fn set(&self) {\n        (**self).set()\n    }\n}\n",
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
        plant.write(
            CONTRACT_GUIDE,
            "# Add a backend\n\n## The contract\n\n`get`:\n\n- a key never written is a miss:\n  \
             `Ok(None)`\n\n## Next\n\n- not quoted\n",
        );
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
    assert_eq!(rules(plant.root(), &PLANTED_CASES), Vec::<String>::new());
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

#[test]
fn a_wrapper_that_does_not_forward_every_method_is_caught() {
    let plant = Plant::tidy();
    // A backend of its own may leave methods to the defaults; a wrapper may not.
    plant.write(
        "crates/layercake-foo/src/own.rs",
        "//! Own.\nstruct Own { map: HashMap<Key, Entry> }\nimpl Backend for Own {\n    \
         fn get(&self) {}\n}\n",
    );
    plant.write(
        "tests/tests/fault/support.rs",
        "//! Support.\nstruct Logged {\n    inner: Arc<dyn Backend>,\n}\n#[async_trait]\n\
         impl Backend for Logged {\n    async fn get(&self) {\n        self.inner.get().await\n    }\n}\n\
         mod tests {\n    struct Wrap<B: Backend>(B);\n    impl<B: Backend> Backend for Wrap<B> {\n        \
         fn set(&self) {}\n    }\n}\n",
    );
    assert_eq!(
        wrappers_not_forwarding(plant.root()),
        [
            "tests/tests/fault/support.rs: `impl Backend for Logged` wraps a backend but does not forward `set`",
            "tests/tests/fault/support.rs: `impl Backend for Wrap` wraps a backend but does not forward `get`",
        ]
    );
    // The forwarding impl for `Arc<B>` is checked too.
    plant.write(
        "crates/layercake-core/src/backend.rs",
        "//! The trait.\npub trait Backend {\n    fn get(&self);\n    fn set(&self) {}\n}\n\
         impl<B: Backend> Backend for Arc<B> {\n    fn get(&self) {\n        (**self).get()\n    }\n}\n",
    );
    let found = wrappers_not_forwarding(plant.root());
    assert_eq!(
        found[0],
        "crates/layercake-core/src/backend.rs: `impl Backend for Arc` wraps a backend but does not forward `set`"
    );
}

#[test]
fn a_contract_bullet_without_a_case_and_a_case_without_a_bullet_are_caught() {
    let plant = Plant::tidy();
    plant.write(
        BACKEND_TRAIT_FILE,
        "//! The trait.\n/// A tier.\n///\n/// # Behavior\n///\n/// - errors are never misses\n///\n\
         /// # Other\n///\n/// - not a contract bullet\npub trait Backend {\n    /// Read.\n    ///\n    \
         /// # Behavior\n    ///\n    /// - a key never written is a [miss](Self::get):\n    \
         ///   `Ok(None)`\n    fn get(&self);\n}\n",
    );
    let cases = [
        ("configuration", "the suite is configured"),
        ("miss", "a key never written is a miss: Ok(None)"),
        ("stale", "stale entries are returned"),
    ];
    assert_eq!(
        contract_and_cases_apart(plant.root(), &cases),
        [
            "crates/layercake-core/src/backend.rs: the contract bullet \"errors are never misses\" has no conformance case",
            "docs/guides/add-a-backend.md: \"## The contract\" does not quote the bullet \"errors are never misses\"",
            "conformance case `stale` checks \"stale entries are returned\", which is not a `# Behavior` bullet of the `Backend` trait (word for word)",
        ]
    );
}
