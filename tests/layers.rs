//! The layer rule of the crate documentation, checked: each top-level module of the library
//! (a folder or file of `src/`) imports only the modules listed before it in `LAYERS`, so no
//! lower layer imports a higher one and no two modules import each other. Test code (a
//! `#[cfg(test)]` module) may reach anywhere.

use std::collections::BTreeMap;
use std::path::Path;

/// Lowest first. A module may import (`crate::NAME`) only the ones before it.
const LAYERS: &[&str] = &[
    "sandbox", "link", "pcap", "host", "services", "client", "replay", "error", "live", "fuzzing",
];

/// The `crate::NAME` paths a file's non-test code names, with the crate root's re-exports
/// (`crate::Error`, `crate::Host`, ...) resolved to the module that defines them.
fn imports(text: &str, reexports: &BTreeMap<String, String>) -> Vec<String> {
    let code = match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut found = Vec::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end]
                    .split(',')
                    .map(|s| s.trim().split("::").next().unwrap_or(""))
                    .collect()
            } else {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                vec![&rest[..end]]
            };
            for n in names {
                let n = reexports.get(n).map_or(n, String::as_str);
                found.push(n.to_string());
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn lower_layers_never_import_higher_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    // `pub use module::{A, B};` in lib.rs
    let mut reexports = BTreeMap::new();
    for line in lib.lines().filter(|l| l.starts_with("pub use ")) {
        let body = line.trim_start_matches("pub use ").trim_end_matches(';');
        if let Some((module, names)) = body.split_once("::") {
            for n in names.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                if !n.is_empty() {
                    reexports.insert(n.to_string(), module.to_string());
                }
            }
        }
    }
    let mut violations = Vec::new();
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if ["lib", "main", "bin"].contains(&name.as_str()) {
            continue;
        }
        let Some(rank) = LAYERS.iter().position(|l| *l == name) else {
            violations.push(format!("src/{name} is not in LAYERS: give it its place"));
            continue;
        };
        seen.push(name.clone());
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else {
            files.push(path.clone());
        }
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for imported in imports(&text, &reexports) {
                match LAYERS.iter().position(|l| *l == imported) {
                    Some(r) if r > rank => violations.push(format!(
                        "{} (layer {name}) imports crate::{imported}, a higher layer",
                        f.strip_prefix(&src).unwrap().display()
                    )),
                    _ => {}
                }
            }
        }
    }
    assert!(seen.len() >= 8, "found only {seen:?} in src/");
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_check_sees_an_upward_import() {
    let reexports = BTreeMap::from([("Host".to_string(), "host".to_string())]);
    let text = "use crate::services::Echo;\nuse crate::{Host, link};\n// crate::live\n";
    assert_eq!(imports(text, &reexports), ["services", "host", "link"]);
    let with_tests = "use crate::link;\n#[cfg(test)]\nmod tests {\n    use crate::live;\n}\n";
    assert_eq!(imports(with_tests, &reexports), ["link"]);
}
