//! The modules of `proxy/` import each other without a circle (issue 10; the layers are listed in
//! docs/architecture.md). This test reads the source files of `src/proxy.rs` and `src/proxy/`,
//! builds their dependency graph and fails naming every circle, with the reference that makes
//! each of its edges.
//!
//! What counts:
//! - A node is a file-level module: `proxy.rs` is `proxy`, `proxy/h1/respond.rs` is
//!   `proxy::h1::respond`. An inline module (`mod tests { .. }`) is part of its file; test code
//!   counts like any other code.
//! - An edge `a → b` is a reference in `a`'s code that resolves into `b`: a private `use`, or a
//!   path anywhere in the code (types, expressions, patterns, and paths inside macro calls) that
//!   starts with `crate::`, `super::`, `self::`, the name of a child module, or a name a `use`
//!   brought into scope.
//! - A re-export (`pub use`, `pub(crate) use`, `pub(super) use`) is an alias, not a dependency of
//!   the module that declares it: a path through it resolves to the module that defines the item
//!   (`super::h1::Pool` is `proxy::h1::upstream`, `crate::proxy::ProxyError` is `proxy::error`).
//! - `mod x;` is not an edge (a parent owns its children; a parent's code using a child's item
//!   is). A glob import is an edge to the module it names. References outside `proxy/` (other
//!   modules of the crate, other crates) are not edges; `pub(in path)` visibilities are ignored.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use syn::buffer::{Cursor, TokenBuffer};
use syn::visit::Visit;

/// A module path from the crate root: `["proxy", "h1", "respond"]`.
type ModPath = Vec<String>;

/// A name a `use` brings into a scope.
#[derive(Debug)]
struct Import {
    /// The module the `use` is written in (paths in it resolve from there).
    scope: ModPath,
    /// The path as written.
    path: Vec<String>,
}

/// One reference in a module's code.
#[derive(Debug)]
struct Reference {
    scope: ModPath,
    path: Vec<String>,
}

/// What the checker knows of the crate's `proxy` modules.
#[derive(Debug, Default)]
struct Modules {
    /// File-level modules: the nodes.
    files: BTreeSet<ModPath>,
    /// Every module, inline ones included.
    all: BTreeSet<ModPath>,
    /// Names brought into each scope by `use` (re-exports included).
    imports: HashMap<ModPath, HashMap<String, Import>>,
    /// The references of each file.
    refs: BTreeMap<ModPath, Vec<Reference>>,
}

/// `a → b` with the first reference that makes it.
type Graph = BTreeMap<ModPath, BTreeMap<ModPath, String>>;

/// The module path of a source file relative to `src/` (`proxy/h1.rs` → `proxy::h1`).
fn module_of(rel: &str) -> ModPath {
    rel.trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect()
}

fn show(p: &[String]) -> String {
    p.join("::")
}

// === impl Modules ===

impl Modules {
    /// Parses `files` (path relative to `src/`, source).
    fn parse(files: &[(String, String)]) -> Self {
        let mut m = Self::default();
        let mut parsed = Vec::new();
        for (rel, src) in files {
            let module = module_of(rel);
            let file = syn::parse_file(src).unwrap_or_else(|e| panic!("{rel}: {e}"));
            m.files.insert(module.clone());
            m.all.insert(module.clone());
            parsed.push((module, file));
        }
        for (module, file) in &parsed {
            m.declare(module, &file.items);
        }
        for (module, file) in parsed {
            let mut v = Collector {
                scope: module.clone(),
                refs: Vec::new(),
            };
            v.visit_file(&file);
            m.refs.insert(module, v.refs);
        }
        m
    }

    /// Records the inline modules and the imports of `scope`'s items.
    fn declare(&mut self, scope: &[String], items: &[syn::Item]) {
        for item in items {
            match item {
                syn::Item::Mod(m) => {
                    let mut inner = scope.to_vec();
                    inner.push(m.ident.to_string());
                    if let Some((_, items)) = &m.content {
                        self.all.insert(inner.clone());
                        self.declare(&inner, items);
                    }
                }
                syn::Item::Use(u) => {
                    let mut leaves = Vec::new();
                    flatten(&u.tree, &mut Vec::new(), &mut leaves);
                    for (path, name) in leaves {
                        if let Some(name) = name {
                            let imp = Import {
                                scope: scope.to_vec(),
                                path,
                            };
                            self.imports
                                .entry(scope.to_vec())
                                .or_default()
                                .insert(name, imp);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn import(&self, scope: &[String], name: &str) -> Option<&Import> {
        self.imports.get(scope)?.get(name)
    }

    /// The module `path`, written in `scope`, names or names an item of (`None`: outside the
    /// crate's modules, or a local name).
    fn resolve(&self, scope: &[String], path: &[String], depth: u32) -> Option<ModPath> {
        assert!(depth < 32, "re-exports in a loop at {}", show(path));
        let first = path.first()?;
        match first.as_str() {
            "crate" => self.walk(Vec::new(), &path[1..], depth),
            "self" => self.walk(scope.to_vec(), &path[1..], depth),
            "super" => {
                let mut cur = scope.to_vec();
                let supers = path.iter().take_while(|s| *s == "super").count();
                for _ in 0..supers {
                    cur.pop()?;
                }
                self.walk(cur, &path[supers..], depth)
            }
            _ => {
                let mut child = scope.to_vec();
                child.push(first.clone());
                if self.all.contains(&child) {
                    self.walk(child, &path[1..], depth)
                } else {
                    let imp = self.import(scope, first)?;
                    let target = self.resolve(&imp.scope, &imp.path, depth + 1)?;
                    self.walk(target, &path[1..], depth)
                }
            }
        }
    }

    /// Follows `rest` from module `cur`: into child modules, through re-exports.
    fn walk(&self, mut cur: ModPath, rest: &[String], depth: u32) -> Option<ModPath> {
        for (i, seg) in rest.iter().enumerate() {
            let mut next = cur.clone();
            next.push(seg.clone());
            if self.all.contains(&next) {
                cur = next;
                continue;
            }
            if let Some(imp) = self.import(&cur, seg) {
                let target = self.resolve(&imp.scope, &imp.path, depth + 1)?;
                return self.walk(target, &rest[i + 1..], depth + 1);
            }
            // An item defined in `cur`.
            break;
        }
        Some(cur)
    }

    /// The file module a module belongs to (`None`: not one of the files read).
    fn file_of(&self, module: &[String]) -> Option<ModPath> {
        (1..=module.len())
            .rev()
            .map(|n| module[..n].to_vec())
            .find(|p| self.files.contains(p))
    }

    fn graph(&self) -> Graph {
        let mut g = Graph::new();
        for (file, refs) in &self.refs {
            let edges = g.entry(file.clone()).or_default();
            for r in refs {
                let Some(target) = self.resolve(&r.scope, &r.path, 0) else {
                    continue;
                };
                let Some(to) = self.file_of(&target) else {
                    continue;
                };
                if &to != file {
                    edges
                        .entry(to)
                        .or_insert_with(|| format!("`{}`", show(&r.path)));
                }
            }
        }
        g
    }
}

/// The leaves of a use tree: the full path and the name it binds (`None`: a glob).
fn flatten(
    tree: &syn::UseTree,
    prefix: &mut Vec<String>,
    out: &mut Vec<(ModPath, Option<String>)>,
) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) if n.ident == "self" => {
            out.push((prefix.clone(), prefix.last().cloned()));
        }
        syn::UseTree::Name(n) => {
            let mut path = prefix.clone();
            path.push(n.ident.to_string());
            out.push((path, Some(n.ident.to_string())));
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            if r.ident != "self" {
                path.push(r.ident.to_string());
            }
            out.push((path, Some(r.rename.to_string())));
        }
        syn::UseTree::Glob(_) => out.push((prefix.clone(), None)),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                flatten(t, prefix, out);
            }
        }
    }
}

/// Collects the references of one file.
struct Collector {
    scope: ModPath,
    refs: Vec<Reference>,
}

impl Collector {
    fn add(&mut self, path: Vec<String>) {
        self.refs.push(Reference {
            scope: self.scope.clone(),
            path,
        });
    }

    /// Paths (`a::b::c`) among a macro call's tokens, nested groups included.
    fn scan(&mut self, mut c: Cursor<'_>) {
        while !c.eof() {
            if let Some((ident, next)) = c.ident() {
                let mut path = vec![ident.to_string()];
                let mut at = next;
                while let Some(after) = colon2(at) {
                    match after.ident() {
                        Some((i, n)) => {
                            path.push(i.to_string());
                            at = n;
                        }
                        None => break,
                    }
                }
                // One name alone may be a local (`error = %e`): only paths count.
                if path.len() > 1 {
                    self.add(path);
                }
                c = at;
            } else if let Some((inside, _, _, next)) = c.any_group() {
                self.scan(inside);
                c = next;
            } else {
                match c.token_tree() {
                    Some((_, next)) => c = next,
                    None => break,
                }
            }
        }
    }
}

/// The cursor past a `::` at `c`.
fn colon2(c: Cursor<'_>) -> Option<Cursor<'_>> {
    let (a, c) = c.punct()?;
    let (b, c) = c.punct()?;
    (a.as_char() == ':' && b.as_char() == ':').then_some(c)
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.scope.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.scope.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        // A re-export is an alias (resolved where it is used), a private import a dependency.
        if matches!(u.vis, syn::Visibility::Inherited) {
            let mut leaves = Vec::new();
            flatten(&u.tree, &mut Vec::new(), &mut leaves);
            for (path, _) in leaves {
                self.add(path);
            }
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.leading_colon.is_none() {
            self.add(p.segments.iter().map(|s| s.ident.to_string()).collect());
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        syn::visit::visit_macro(self, m);
        let buf = TokenBuffer::new2(m.tokens.clone());
        self.scan(buf.begin());
    }

    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}
}

/// The circles of `g`: one per strongly connected component of more than one module (the
/// modules that all reach each other), as a shortest way around it, and the component.
fn circles(g: &Graph) -> Vec<(Vec<ModPath>, Vec<ModPath>)> {
    let nodes: Vec<&ModPath> = g.keys().collect();
    let index: HashMap<&ModPath, usize> = nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let succ: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| g[*n].keys().filter_map(|t| index.get(t).copied()).collect())
        .collect();
    let reach = |from: usize| {
        let mut seen = vec![false; nodes.len()];
        let mut stack = vec![from];
        while let Some(n) = stack.pop() {
            for &s in &succ[n] {
                if !seen[s] {
                    seen[s] = true;
                    stack.push(s);
                }
            }
        }
        seen
    };
    let reaches: Vec<Vec<bool>> = (0..nodes.len()).map(reach).collect();
    let mut done = vec![false; nodes.len()];
    let mut out = Vec::new();
    for a in 0..nodes.len() {
        if done[a] || !reaches[a][a] {
            continue;
        }
        let component: Vec<usize> = (0..nodes.len())
            .filter(|&b| reaches[a][b] && reaches[b][a])
            .collect();
        for &b in &component {
            done[b] = true;
        }
        // Breadth first from `a` back to `a`.
        let mut prev = vec![usize::MAX; nodes.len()];
        let mut queue = std::collections::VecDeque::from([a]);
        'search: while let Some(n) = queue.pop_front() {
            for &s in &succ[n] {
                if s == a {
                    let mut way = vec![a, n];
                    let mut at = n;
                    while at != a {
                        at = prev[at];
                        way.push(at);
                    }
                    way.reverse();
                    let way = way.iter().map(|&i| nodes[i].clone()).collect();
                    let all = component.iter().map(|&i| nodes[i].clone()).collect();
                    out.push((way, all));
                    break 'search;
                }
                if prev[s] == usize::MAX && s != a {
                    prev[s] = n;
                    queue.push_back(s);
                }
            }
        }
    }
    out
}

/// `a → b → a`, each edge with its reference, then every edge inside the component.
fn describe(g: &Graph, (circle, component): &(Vec<ModPath>, Vec<ModPath>)) -> String {
    let mut s = show(&circle[0]);
    for w in circle.windows(2) {
        s.push_str(&format!(
            "\n  → {} ({} in {})",
            show(&w[1]),
            g[&w[0]][&w[1]],
            show(&w[0])
        ));
    }
    s.push_str(&format!(
        "\n  all {} modules of this knot, and their edges:",
        component.len()
    ));
    for a in component {
        for (b, why) in &g[a] {
            if component.contains(b) {
                s.push_str(&format!("\n    {} → {} ({why})", show(a), show(b)));
            }
        }
    }
    s
}

/// Every `.rs` file under `dir`, relative to `src`.
fn sources(src: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            sources(src, &p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p
                .strip_prefix(src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&p).unwrap()));
        }
    }
}

fn proxy_sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![(
        "proxy.rs".to_string(),
        std::fs::read_to_string(src.join("proxy.rs")).unwrap(),
    )];
    sources(&src, &src.join("proxy"), &mut files);
    files
}

#[test]
fn no_import_circle_in_proxy() {
    let files = proxy_sources();
    assert!(files.len() > 20, "the proxy sources were not found");
    let m = Modules::parse(&files);
    let g = m.graph();
    // The checker sees the engine's imports at all (a resolver that found nothing would pass).
    let h1 = vec!["proxy".to_string(), "h1".to_string()];
    let error = vec!["proxy".to_string(), "error".to_string()];
    assert!(
        g[&h1].contains_key(&error),
        "h1 → error not seen: {:?}",
        g[&h1]
    );
    let found = circles(&g);
    let text: Vec<String> = found.iter().map(|c| describe(&g, c)).collect();
    assert!(
        found.is_empty(),
        "{} import circle(s) in proxy/:\n{}",
        found.len(),
        text.join("\n")
    );
}

fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect()
}

#[test]
fn a_circle_through_a_re_export_is_found_and_named() {
    let f = files(&[
        ("proxy.rs", "mod a; mod b; pub use a::Thing;"),
        ("proxy/a.rs", "use super::b::Other; pub struct Thing;"),
        (
            "proxy/b.rs",
            "pub struct Other; fn f() { let _ = crate::proxy::Thing; }",
        ),
    ]);
    let g = Modules::parse(&f).graph();
    let found = circles(&g);
    assert_eq!(found.len(), 1, "{g:?}");
    let text = describe(&g, &found[0]);
    assert!(text.contains("`crate::proxy::Thing` in proxy::b"), "{text}");
    assert!(text.contains("`super::b::Other` in proxy::a"), "{text}");
}

#[test]
fn re_exports_parents_and_macros_resolve_to_the_defining_file() {
    let f = files(&[
        ("proxy.rs", "mod h1; mod worker; fn f() { h1::go(); }"),
        (
            "proxy/h1.rs",
            "mod upstream; pub(super) use self::upstream::Pool; use super::worker::Worker;",
        ),
        ("proxy/h1/upstream.rs", "pub struct Pool;"),
        (
            "proxy/worker.rs",
            "mod inner { fn g() { let _ = super::super::h1::Pool; } }\n\
             fn h() { tracing::debug!(x = ?crate::proxy::h1::Pool); }",
        ),
    ]);
    let g = Modules::parse(&f).graph();
    let p = |s: &str| s.split("::").map(str::to_string).collect::<ModPath>();
    let worker: Vec<_> = g[&p("proxy::worker")].keys().map(|k| show(k)).collect();
    assert_eq!(worker, ["proxy::h1::upstream"], "the re-export is an alias");
    let h1: Vec<_> = g[&p("proxy::h1")].keys().map(|k| show(k)).collect();
    assert_eq!(
        h1,
        ["proxy::worker"],
        "`pub use` is not an edge; a private use is"
    );
    assert!(
        g[&p("proxy")].contains_key(&p("proxy::h1")),
        "a child by name"
    );
    assert!(circles(&g).is_empty());
}
