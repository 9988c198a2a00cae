//! `gatewayd check` on every config fixture: valid ones pass, each invalid one names its file,
//! line and field and exits 64.

use std::path::PathBuf;
use std::process::Command;

use meshgate_e2e::harness::binary;

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/config")
        .join(kind);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

/// `# expect: FIELD` and `# line: N` header comments of an invalid fixture.
fn expectations(src: &str) -> (String, String) {
    let get = |k: &str| {
        src.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("# {k}:"))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    (get("expect"), get("line"))
}

#[test]
fn invalid_configs_are_rejected_with_their_position() {
    let files = fixtures("invalid");
    assert!(
        files.len() >= 5,
        "expected invalid fixtures, found {files:?}"
    );
    for f in files {
        let (field, line) = expectations(&std::fs::read_to_string(&f).unwrap());
        let out = Command::new(binary("gatewayd"))
            .arg("check")
            .arg("--config")
            .arg(&f)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{}: {stderr}", f.display());
        let want = format!("{}:{line}:", f.display());
        assert!(
            stderr.contains(&want),
            "{}: stderr lacks {want}: {stderr}",
            f.display()
        );
        assert!(
            stderr.contains(&field),
            "{}: stderr lacks field {field}: {stderr}",
            f.display()
        );
    }
}

#[test]
fn valid_configs_and_the_docs_example_pass() {
    let mut files = fixtures("valid");
    files.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/gatewayd.toml"));
    for f in files {
        let out = Command::new(binary("gatewayd"))
            .arg("check")
            .arg("--config")
            .arg(&f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
