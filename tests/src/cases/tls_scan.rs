//! The TLS listener checked by an independent scanner: `sslyze` (PyPI, installed into `.venv`
//! by tests/run.sh) against Mozilla's "intermediate" configuration. The test certificate is
//! signed by a CA made at test time, so the scanner's certificate checks (trust path, lifespan)
//! are not this test's business; protocols, cipher suites and curves must pass.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use meshgate_e2e::harness::gateway::preamble;
use meshgate_e2e::harness::tls::{run, Pki};
use meshgate_e2e::harness::{trace_init, Gateway, Origin};
use serde_json::Value;

fn sslyze() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."));
    let p = root.join(".venv").join("bin").join("python");
    assert!(
        p.exists(),
        "{} not found: run tests/run.sh (it installs sslyze)",
        p.display()
    );
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslyze_finds_the_tls_listener_compliant_with_mozilla_intermediate() {
    trace_init();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    pki.write_leaf("api", &["api.example.com"], 7);
    let origin = Origin::start("web").await;
    let body = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nname = \"tls\"\n[listeners.tls]\ncertificates = [{{ cert = \"api.pem\", key = \"api.key\" }}]\n\n[services.web]\nendpoints = [\"{}\"]\n\n[[routes]]\nname = \"all\"\nbackends = [{{ name = \"web\", weight = 1 }}]\n",
        origin.addr
    );
    std::fs::write(
        tmp.path().join("gatewayd.toml"),
        format!("{}{body}", preamble(1)),
    )
    .unwrap();
    let gw = Gateway::start_in(tmp.path()).unwrap();
    let port = gw.listeners[1].port();
    let json = tmp.path().join("scan.json");
    let target = format!("api.example.com:{port}{{127.0.0.1}}");
    let out = {
        let json = json.clone();
        tokio::task::spawn_blocking(move || {
            run(Command::new(sslyze())
                // Few connections at a time: a loaded 2-core machine running the rest of the
                // suite must not turn a slow handshake into a "refused" verdict.
                .args([
                    "-m",
                    "sslyze",
                    "--slow_connection",
                    "--mozilla_config=intermediate",
                ])
                .arg(format!("--json_out={}", json.display()))
                .arg(target))
        })
        .await
        .unwrap()
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}");
    // The compliance verdict: every failed check, by name.
    let verdict = text
        .split("COMPLIANCE AGAINST TLS CONFIGURATION")
        .nth(1)
        .unwrap_or_else(|| panic!("no compliance section in sslyze's output:\n{text}"));
    let failed: Vec<&str> = verdict
        .lines()
        .filter_map(|l| l.trim().strip_prefix("* "))
        .filter_map(|l| l.split(':').next())
        .collect();
    assert!(
        verdict.contains("OK - Compliant") || verdict.contains("FAILED - Not compliant"),
        "{verdict}"
    );
    let not_certificate: Vec<&&str> = failed
        .iter()
        .filter(|k| !k.starts_with("certificate_") && !k.starts_with("maximum_certificate"))
        .collect();
    assert!(
        not_certificate.is_empty(),
        "protocols, ciphers or curves fail Mozilla intermediate: {not_certificate:?}\n{verdict}"
    );

    // And what the scan saw, from its JSON: TLS 1.2 and 1.3 only, Mozilla's curves only.
    let scan: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let r = &scan["server_scan_results"][0]["scan_result"];
    let accepted = |k: &str| {
        r[k]["result"]["accepted_cipher_suites"]
            .as_array()
            .unwrap_or_else(|| panic!("{k} missing from the scan: {r}"))
            .len()
    };
    for old in [
        "ssl_2_0_cipher_suites",
        "ssl_3_0_cipher_suites",
        "tls_1_0_cipher_suites",
        "tls_1_1_cipher_suites",
    ] {
        assert_eq!(accepted(old), 0, "{old}");
    }
    assert!(accepted("tls_1_2_cipher_suites") > 0);
    assert!(accepted("tls_1_3_cipher_suites") > 0);
    let curves: BTreeSet<&str> = r["elliptic_curves"]["result"]["supported_curves"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let mozilla: BTreeSet<&str> = ["X25519", "prime256v1", "secp256r1", "secp384r1"].into();
    assert!(
        !curves.is_empty() && curves.is_subset(&mozilla),
        "{curves:?}"
    );
    drop(gw);
}
