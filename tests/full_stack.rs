//! No Docker engine runs on our machines, so the stack definition is kept honest by reading
//! it: the services the README promises exist, every `WALLETI_*` variable it sets is one the
//! configuration reads, every mounted observability file exists, and the dashboards are valid.

use std::collections::BTreeSet;
use std::path::Path;
use walleti::config::KNOWN_WALLETI_VARIABLES;

fn compose() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docker-compose.yml"))
        .expect("docker-compose.yml")
}

/// Top-level service names: the two-space-indented keys under `services:`.
fn services(text: &str) -> BTreeSet<String> {
    let mut inside = false;
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() && !line.starts_with('#') {
            inside = line.trim_end() == "services:";
            continue;
        }
        if inside
            && line.starts_with("  ")
            && !line.starts_with("   ")
            && line.trim_end().ends_with(':')
        {
            names.insert(line.trim().trim_end_matches(':').to_owned());
        }
    }
    names
}

#[test]
fn the_stack_has_every_service() {
    let names = services(&compose());
    for service in [
        "postgres",
        "redis",
        "mailhog",
        "prometheus",
        "grafana",
        "walleti",
        "bank-sim",
    ] {
        assert!(
            names.contains(service),
            "docker-compose.yml lacks {service}: {names:?}"
        );
    }
}

#[test]
fn every_walleti_variable_in_the_stack_is_one_the_app_reads() {
    let text = compose();
    let mut found = BTreeSet::new();
    for (index, _) in text.match_indices("WALLETI_") {
        let name: String = text[index..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
            .collect();
        found.insert(name);
    }
    assert!(found.len() >= 8, "{found:?}");
    for name in &found {
        assert!(
            KNOWN_WALLETI_VARIABLES.contains(&name.as_str()),
            "{name} is set in docker-compose.yml but not read by walleti"
        );
    }
}

#[test]
fn mounted_observability_files_exist_and_dashboards_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for path in [
        "observability/prometheus.yml",
        "observability/grafana/provisioning/datasources/prometheus.yml",
        "observability/grafana/provisioning/dashboards/walleti.yml",
        "Dockerfile",
    ] {
        assert!(root.join(path).is_file(), "{path} missing");
    }
    for name in ["overview", "actors"] {
        let text = std::fs::read_to_string(
            root.join(format!("observability/grafana/dashboards/{name}.json")),
        )
        .expect("dashboard");
        let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let panels = dashboard["panels"].as_array().expect("panels");
        assert!(!panels.is_empty());
        for panel in panels {
            assert_eq!(
                panel["datasource"]["uid"], "prometheus",
                "{name}: {}",
                panel["title"]
            );
            assert!(
                panel["targets"]
                    .as_array()
                    .is_some_and(|targets| !targets.is_empty())
            );
        }
    }
}

#[test]
fn the_stack_publishes_on_loopback_only_and_ships_no_secrets() {
    let text = compose();
    for line in text
        .lines()
        .filter(|line| line.trim_start().starts_with("ports:"))
    {
        let published: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert!(!published.is_empty(), "{line}");
        for port in published {
            assert!(
                port.starts_with("127.0.0.1:"),
                "{port} is published beyond loopback"
            );
        }
    }
    for secret in [
        "WALLETI_ADMIN_TOKEN",
        "WALLETI_BANK_WEBHOOK_SECRET",
        "WALLETI_BANK_API_TOKEN",
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
    ] {
        assert!(
            text.contains(&format!("${{{secret}:?")),
            "{secret} must be required (${{{secret}:?…}})"
        );
        assert!(
            !text.contains(&format!("${{{secret}:-")),
            "{secret} has a default"
        );
    }
    assert!(
        !text.contains("change-me"),
        "placeholder secrets in docker-compose.yml"
    );
    assert!(text.contains("--requirepass"), "Redis without a password");
    assert!(
        text.contains("redis://:${REDIS_PASSWORD"),
        "walleti must authenticate to Redis"
    );
    // The development simulator is never embedded by the shipped defaults.
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"))
            .expect("Dockerfile");
    for definition in [&text, &dockerfile] {
        assert!(!definition.contains("WALLETI_BANK_SIMULATOR"));
    }
    assert!(dockerfile.contains("WALLETI_BIND=0.0.0.0:8080"));
}
