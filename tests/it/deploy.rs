//! The deployment files: `.env.example` and `coldsweep.example.toml` are
//! produced from the table of variables (rewrite them with
//! `UPDATE_ENV_EXAMPLE=1 UPDATE_TOML_EXAMPLE=1 cargo test --test it deploy`),
//! and the container and service files keep the promises the README makes
//! for them (`scripts/check-deploy` goes further where Docker or
//! systemd are present).

use std::path::Path;

use coldsweep::config::file::{ExtraKey, Secrecy};
use coldsweep::config::{ConfigFile, Group, VARIABLES};

/// The binary's own variables, which are not library settings:
/// `(name, default, help)`.
const BINARY_VARIABLES: &[(&str, Option<&str>, &str)] = &[
    (
        "COLDSWEEP_CONFIG",
        None,
        "a TOML config file of settings (see coldsweep.example.toml); these variables override it",
    ),
    (
        "DATABASE_URL",
        None,
        "the catalog: postgres://user:password@host:5432/db (Postgres, Supabase) or sqlite:path.db",
    ),
    (
        "COLDSWEEP_METRICS_ADDR",
        None,
        "`run` only: serve /metrics, /healthz and /readyz on this IP address and port, e.g. 127.0.0.1:9187",
    ),
    (
        "COLDSWEEP_LOG_FORMAT",
        Some("text"),
        "log lines on stderr: text or json",
    ),
    ("RUST_LOG", Some("info"), "log filter, e.g. coldsweep=debug"),
];

/// Whether the config file may set the binary's variable `name` (not the
/// file's own name, nor the log filter, read before anything else).
fn in_config_file(name: &str) -> bool {
    !matches!(name, "COLDSWEEP_CONFIG" | "RUST_LOG")
}

fn entry(out: &mut String, name: &str, default: Option<&str>, help: &str) {
    out.push_str(&format!("# {help}\n# {name}={}\n", default.unwrap_or("")));
}

fn env_example() -> String {
    let mut out = String::from(
        "# coldsweep's settings, each with its default (produced from the table of variables;\n\
         # see the README's Configuration section). Copy to .env or /etc/coldsweep/coldsweep.env,\n\
         # uncomment what you set. Keep the file private (chmod 600): it holds keys.\n",
    );
    out.push_str("\n## Catalog, logs, metrics\n");
    for (name, default, help) in BINARY_VARIABLES {
        entry(&mut out, name, *default, help);
    }
    for group in [Group::Cold, Group::Archiver, Group::Hot] {
        out.push_str(&format!("\n## {}\n", group.heading()));
        for var in VARIABLES.iter().filter(|v| v.group == group) {
            entry(&mut out, var.name, var.default, var.help);
        }
    }
    out
}

#[test]
fn env_example_lists_every_variable_with_its_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".env.example");
    let expected = env_example();
    if std::env::var_os("UPDATE_ENV_EXAMPLE").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let found = std::fs::read_to_string(&path).unwrap();
    assert!(
        found == expected,
        ".env.example is not what the table of variables gives; \
         rewrite it with UPDATE_ENV_EXAMPLE=1 cargo test --test it deploy"
    );
    // Every library variable is there with its default, not only the file as a whole.
    for var in VARIABLES {
        let line = format!("# {}={}\n", var.name, var.default.unwrap_or(""));
        assert!(found.contains(&line), "{line}");
    }
}

/// A default as a TOML value: a whole number as an integer, else a string.
fn toml_value(default: Option<&str>) -> String {
    match default {
        Some(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.to_owned()
        }
        Some(text) => format!("{text:?}"),
        None => "\"\"".to_owned(),
    }
}

fn toml_entry(out: &mut String, name: &str, default: Option<&str>, help: &str, secret: bool) {
    let advice = if secret {
        " (a secret: better in the environment)"
    } else {
        ""
    };
    out.push_str(&format!(
        "# {help}{advice}\n# {} = {}\n",
        name.to_ascii_lowercase(),
        toml_value(default)
    ));
}

fn toml_example() -> String {
    let mut out = String::from(
        "# coldsweep's config file, read with `coldsweep --config coldsweep.toml` (or\n\
         # COLDSWEEP_CONFIG), each setting with its default (produced from the table of variables;\n\
         # see the README's \"Config file\" section). Uncomment what you set. Flags and environment\n\
         # variables override the file. Keep secrets in environment variables; a file that holds\n\
         # them must be private (chmod 600).\n\
         \n[settings]\n",
    );
    out.push_str("\n## Catalog, logs, metrics\n");
    for (name, default, help) in BINARY_VARIABLES.iter().filter(|v| in_config_file(v.0)) {
        toml_entry(&mut out, name, *default, help, *name == "DATABASE_URL");
    }
    for group in [Group::Cold, Group::Archiver, Group::Hot] {
        out.push_str(&format!("\n## {}\n", group.heading()));
        for var in VARIABLES.iter().filter(|v| v.group == group) {
            toml_entry(&mut out, var.name, var.default, var.help, var.secret);
        }
    }
    out
}

#[test]
fn toml_example_lists_every_setting_and_parses_when_uncommented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("coldsweep.example.toml");
    let expected = toml_example();
    if std::env::var_os("UPDATE_TOML_EXAMPLE").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let found = std::fs::read_to_string(&path).unwrap();
    assert!(
        found == expected,
        "coldsweep.example.toml is not what the table of variables gives; \
         rewrite it with UPDATE_TOML_EXAMPLE=1 cargo test --test it deploy"
    );
    // Every setting uncommented, at its default: the file reads, and sets
    // what the table says.
    let uncommented: String = found
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(entry)
                if entry
                    .split_once(" = ")
                    .is_some_and(|(key, _)| !key.is_empty() && !key.contains(' ')) =>
            {
                entry
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let extra: Vec<ExtraKey> = BINARY_VARIABLES
        .iter()
        .filter(|v| in_config_file(v.0))
        .map(|v| ExtraKey {
            name: v.0,
            secrecy: Secrecy::Public,
        })
        .collect();
    let file = ConfigFile::parse(&path, uncommented, &extra).unwrap();
    for var in VARIABLES {
        assert_eq!(
            file.get(var.name),
            Some(var.default.unwrap_or("")),
            "{}",
            var.name
        );
    }
    assert_eq!(file.get("COLDSWEEP_LOG_FORMAT"), Some("text"));
}

#[test]
fn the_readme_example_config_file_reads() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("\n## Config file\n")
        .nth(1)
        .expect("README has a Config file section");
    let example = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the section shows a TOML file");
    let extra: Vec<ExtraKey> = ["DATABASE_URL", "COLDSWEEP_LOG_FORMAT"]
        .into_iter()
        .map(|name| ExtraKey {
            name,
            secrecy: Secrecy::Public,
        })
        .collect();
    let file = ConfigFile::parse("README.md", example.to_owned(), &extra).unwrap();
    assert_eq!(file.get("ARCHIVE_RETENTION_JOBS"), Some("3"));
}

#[test]
fn the_container_runs_as_a_non_root_user_from_a_multi_stage_build() {
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let stages = dockerfile
        .lines()
        .filter(|l| l.trim_start().starts_with("FROM "))
        .count();
    assert!(stages >= 2, "a build stage and a runtime stage");
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap();
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage names its user");
    let uid = user.split(':').next().unwrap().trim();
    assert!(
        uid.parse::<u32>().is_ok_and(|uid| uid != 0),
        "a numeric non-root uid (Kubernetes' runAsNonRoot checks numbers), got {user}"
    );
    assert!(
        !runtime.contains("cargo") && !runtime.contains("rust:"),
        "no toolchain in the runtime image"
    );
}

#[test]
fn the_service_unit_is_hardened_and_reads_its_settings_from_a_private_file() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/coldsweep.service"),
    )
    .unwrap();
    for line in [
        "EnvironmentFile=/etc/coldsweep/coldsweep.env",
        "ExecStart=/usr/local/bin/coldsweep run",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "RestartPreventExitStatus=2",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}");
    }
}
