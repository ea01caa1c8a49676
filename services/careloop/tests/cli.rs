//! The command line: migrations on both databases, content checks, and clear errors for bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn careloop(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_careloop"));
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd.env("CARELOOP_LOG__FORMAT", "pretty");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn migrate_up_status_down_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let up = careloop(dir.path(), &["migrate", "up"], &[]);
    assert!(up.status.success(), "{}", stderr(&up));
    assert!(dir.path().join("data/careloop.sqlite").exists());
    let status = careloop(dir.path(), &["migrate", "status"], &[]);
    assert!(status.status.success(), "{}", stderr(&status));
    let down = careloop(dir.path(), &["migrate", "down"], &[]);
    assert!(down.status.success(), "{}", stderr(&down));
}

#[test]
fn content_check_lists_every_problem_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.md"), "no header").unwrap();
    std::fs::write(dir.path().join("b.md"), "+++\nkind = \"poem\"\n+++\nbody").unwrap();
    let out = careloop(dir.path(), &["content", "check", "--dir", "."], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("2 problem(s)"), "{err}");
    assert!(err.contains("a.md") && err.contains("b.md"), "{err}");

    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../content");
    let ok = careloop(
        dir.path(),
        &["content", "check", "--dir", shipped.to_str().unwrap()],
        &[],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
}

#[test]
fn content_check_reports_files_that_miss_their_reading_level() {
    let dir = tempfile::tempdir().unwrap();
    let header = "+++\nkind = \"article\"\nkey = \"what-it-is\"\ncondition = \"ckd\"\nlanguage = \"en\"\nreading_level = \"easy\"\nversion = 1\nreview_state = \"draft\"\ntitle = \"CKD\"\n+++\n";
    let hard = "Chronic kidney disease is characterized by progressive deterioration of glomerular \
                filtration, frequently accompanied by albuminuria and electrolyte disturbances.";
    std::fs::write(dir.path().join("hard.md"), format!("{header}{hard}")).unwrap();
    let out = careloop(dir.path(), &["content", "check", "--dir", "."], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("1 file(s) miss their reading level"), "{err}");
    assert!(
        err.contains("hard.md: Flesch-Kincaid grade") && err.contains("(easy needs < 6.0)"),
        "{err}"
    );

    let easy = "Your kidneys clean your blood. When they are sick, waste stays in your body.";
    std::fs::write(dir.path().join("hard.md"), format!("{header}{easy}")).unwrap();
    let ok = careloop(dir.path(), &["content", "check", "--dir", "."], &[]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}

#[test]
fn content_import_is_idempotent_and_respects_demo_mode() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../content");
    let args = ["content", "import", "--dir", shipped.to_str().unwrap()];
    let first = careloop(dir.path(), &args, &[("CARELOOP_DEMO_MODE", "false")]);
    assert!(first.status.success(), "{}", stderr(&first));
    let log = stderr(&first);
    assert!(
        log.contains("approved=0") && !log.contains("new_versions=0"),
        "drafts only outside demo mode: {log}"
    );
    let second = careloop(dir.path(), &args, &[("CARELOOP_DEMO_MODE", "true")]);
    let log = stderr(&second);
    assert!(second.status.success(), "{log}");
    assert!(
        log.contains("new_versions=0"),
        "unchanged files add no versions: {log}"
    );
    assert!(
        !log.contains("approved=0"),
        "demo mode approves seed drafts: {log}"
    );
}

#[test]
fn bad_settings_name_the_setting_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = careloop(
        dir.path(),
        &["migrate"],
        &[("CARELOOP_DATABASE__URL", "mysql://x")],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("database.url"), "{}", stderr(&out));
    assert!(!dir.path().join("data").exists());

    let out = careloop(dir.path(), &["serve", "--roles", "gateway,web"], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown role 'web'"),
        "{}",
        stderr(&out)
    );

    let out = careloop(dir.path(), &["serve", "--roles", "gateway"], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("needs the llm role"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn migrations_apply_on_postgres_from_the_same_code() {
    let admin = std::env::var("CARELOOP_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("careloop_cli_{}", std::process::id());
    let psql = |sql: &str| {
        let out = Command::new("psql")
            .arg(&admin)
            .arg("-qc")
            .arg(sql)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    psql(&format!("CREATE DATABASE {name}"));
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let dir = tempfile::tempdir().unwrap();
    for action in ["up", "down", "up"] {
        let out = careloop(
            dir.path(),
            &["migrate", action],
            &[("CARELOOP_DATABASE__URL", &url)],
        );
        assert!(out.status.success(), "{action}: {}", stderr(&out));
    }
    assert!(
        !dir.path().join("data").exists(),
        "no SQLite file when PostgreSQL is configured"
    );
    psql(&format!("DROP DATABASE {name} WITH (FORCE)"));
}
