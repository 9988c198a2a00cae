//! Real Consul clients against devconsul, unchanged: py-consul (KV, cas, a blocking read, agent
//! registration with a TTL check, health and catalog) and Ansible's `community.general.consul_kv`
//! (set, read, idempotence, delete). Both come from the `.venv` that `tests/run.sh` installs from
//! `tests/python/requirements.txt`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use meshgate_e2e::harness::consul::DevConsul;
use meshgate_e2e::harness::{patience, trace_init};

/// The repository root (this crate is `tests/`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// `.venv/bin/<tool>`; fails the test when the venv is missing.
fn venv_tool(tool: &str) -> PathBuf {
    let p = repo_root().join(".venv").join("bin").join(tool);
    assert!(
        p.exists(),
        "{} not found: run tests/run.sh (it installs the Python tools)",
        p.display()
    );
    p
}

/// A bound for a Python tool run: interpreter start-up and Ansible's module round trips are
/// slow on a loaded machine; success returns as soon as the process exits.
fn tool_timeout() -> Duration {
    patience() * 6
}

/// Runs `program args` with `envs`, kills it by PID past `tool_timeout`, and panics with its
/// whole output unless it exits 0.
async fn run_ok(program: &Path, args: &[String], envs: &[(&str, String)], cwd: &Path) {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("PYTHONPATH")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    let pid = child.id();
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let outputs = async {
        let (o, e) = tokio::join!(read_all(out), read_all(err));
        (o, e, child.wait().await)
    };
    let what = format!("{} {}", program.display(), args.join(" "));
    match tokio::time::timeout(tool_timeout(), outputs).await {
        Ok((stdout, stderr, status)) => {
            let status = status.unwrap_or_else(|e| panic!("wait for {what}: {e}"));
            assert!(
                status.success(),
                "{what}: {status}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
            );
        }
        Err(_) => {
            // Our own child, by its PID (kill_on_drop would do it too).
            let _ = child.start_kill();
            let _ = child.wait().await;
            panic!(
                "{what} (pid {pid:?}) did not finish within {:?}; killed",
                tool_timeout()
            );
        }
    }
}

async fn read_all(stream: Option<impl tokio::io::AsyncRead + Unpin>) -> String {
    let mut buf = Vec::new();
    if let Some(mut s) = stream {
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut buf).await;
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_consul_works_against_devconsul_unchanged() {
    trace_init();
    let python = venv_tool("python");
    let dc = DevConsul::start().unwrap();
    let script = repo_root().join("tests/python/consul_client_check.py");
    let tmp = tempfile::tempdir().unwrap();
    run_ok(
        &python,
        &[script.display().to_string(), dc.addr.to_string()],
        &[
            ("PYTHONDONTWRITEBYTECODE", "1".into()),
            // requests must not send loopback traffic to a proxy from the environment.
            ("NO_PROXY", "127.0.0.1,localhost".into()),
            ("no_proxy", "127.0.0.1,localhost".into()),
        ],
        tmp.path(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ansible_consul_kv_works_against_devconsul_unchanged() {
    trace_init();
    let python = venv_tool("python");
    let playbook_bin = venv_tool("ansible-playbook");
    let dc = DevConsul::start().unwrap();
    let playbook = repo_root().join("tests/python/consul_kv_playbook.yml");
    // Ansible's config, home and temp dirs all live in a fresh directory: nothing from the
    // machine's ~/.ansible or /etc/ansible is read, nothing is left behind, nothing is fetched.
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().to_path_buf();
    let cfg = home.join("ansible.cfg");
    std::fs::write(&cfg, "").unwrap();
    let at = |sub: &str| home.join(sub).display().to_string();
    let envs = [
        ("ANSIBLE_CONFIG", cfg.display().to_string()),
        ("ANSIBLE_HOME", at("")),
        ("ANSIBLE_LOCAL_TEMP", at("tmp")),
        ("ANSIBLE_REMOTE_TEMP", at("remote-tmp")),
        ("ANSIBLE_PYTHON_INTERPRETER", python.display().to_string()),
        ("ANSIBLE_HOST_KEY_CHECKING", "False".into()),
        ("ANSIBLE_RETRY_FILES_ENABLED", "False".into()),
        ("ANSIBLE_NOCOLOR", "1".into()),
        ("ANSIBLE_FORCE_COLOR", "0".into()),
        ("ANSIBLE_DEPRECATION_WARNINGS", "False".into()),
        ("ANSIBLE_SYSTEM_WARNINGS", "False".into()),
        ("ANSIBLE_GATHERING", "explicit".into()),
        ("PYTHONDONTWRITEBYTECODE", "1".into()),
        ("NO_PROXY", "127.0.0.1,localhost".into()),
        ("no_proxy", "127.0.0.1,localhost".into()),
    ];
    let args = [
        "-i".to_string(),
        "localhost,".to_string(),
        playbook.display().to_string(),
        "-e".to_string(),
        format!("consul_host={}", dc.addr.ip()),
        "-e".to_string(),
        format!("consul_port={}", dc.addr.port()),
    ];
    run_ok(&playbook_bin, &args, &envs, tmp.path()).await;
}
