//! Keeps `compose/` consistent with the configuration loader: every candela
//! node service of `compose/docker-compose.yml` is read (YAML anchors and
//! merges applied, `${VAR}` interpolated as docker compose does), and its
//! environment is fed through `Config::parse` on the shipped `cluster.toml`,
//! exactly as the node does at start-up. A variable that names no field, a
//! bad value, a peer that names no service, or a command the image cannot
//! run fails here instead of in a deployment. The compose tool itself
//! (`docker compose`, or Debian's `docker-compose`, installed by
//! `scripts/services`) must accept the file too, and render each node's
//! environment as this test reads it.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use candela_node::config::{Config, Role};
use serde_yaml::Value;

const COMPOSE: &str = include_str!("../../compose/docker-compose.yml");
const DOCKERFILE: &str = include_str!("../../compose/Dockerfile");
const CLUSTER_TOML: &str = include_str!("../../cluster.toml");
const CONFIG_IN_IMAGE: &str = "/etc/candela/cluster.toml";

/// The deployer's variables, as `export`ed before `docker compose up`.
fn deployer_env() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        (
            "CANDELA_CLUSTER_COOKIE",
            "cookie-of-the-compose-test-0123456789abcdef",
        ),
        ("CANDELA_ADMIN_TOKEN", "token"),
        ("POSTGRES_PASSWORD", "secret"),
        ("GRAFANA_ADMIN_PASSWORD", "grafana-secret"),
    ])
}

/// Compose's interpolation: `${VAR}`, `${VAR:-default}`, `${VAR:?error}`.
fn interpolate(text: &str, env: &BTreeMap<&str, &str>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| format!("unclosed `${{` in `{text}`"))?;
        let expr = &rest[start + 2..start + end];
        let value = if let Some((var, default)) = expr.split_once(":-") {
            env.get(var)
                .filter(|v| !v.is_empty())
                .copied()
                .unwrap_or(default)
                .to_owned()
        } else if let Some((var, message)) = expr.split_once(":?") {
            match env.get(var).filter(|v| !v.is_empty()) {
                Some(v) => (*v).to_owned(),
                None => return Err(format!("{var}: {message}")),
            }
        } else {
            env.get(expr).copied().unwrap_or_default().to_owned()
        };
        out.push_str(&value);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn compose() -> Value {
    let mut doc: Value = serde_yaml::from_str(COMPOSE).expect("compose/docker-compose.yml is YAML");
    doc.apply_merge().expect("merge keys");
    doc
}

/// A candela node service: its name, its environment interpolated, its spec.
type NodeService = (String, Vec<(String, String)>, Value);

/// Every candela node service of the file.
fn nodes(env: &BTreeMap<&str, &str>) -> Vec<NodeService> {
    let doc = compose();
    let services = doc["services"].as_mapping().expect("services");
    services
        .iter()
        .filter(|(_, s)| {
            s["image"].as_str() == Some("candela-node:local") && s["command"][0] == "node"
        })
        .map(|(name, s)| {
            let vars = s["environment"]
                .as_mapping()
                .unwrap_or_else(|| panic!("{name:?}: environment as a mapping"))
                .iter()
                .map(|(k, v)| {
                    let value =
                        interpolate(&scalar(v), env).unwrap_or_else(|e| panic!("{name:?}: {e}"));
                    (scalar(k), value)
                })
                .collect();
            (scalar(name), vars, s.clone())
        })
        .collect()
}

#[test]
fn every_compose_node_passes_the_configuration_loader() {
    let env = deployer_env();
    let doc = compose();
    let services: BTreeSet<String> = doc["services"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(scalar)
        .collect();
    let nodes = nodes(&env);
    assert_eq!(nodes.len(), 3, "three candela nodes");
    // The `certs` service makes a certificate for exactly these nodes, in
    // the volume every node mounts read-only.
    let certs = &doc["services"]["certs"];
    let made: BTreeSet<String> = certs["command"]
        .as_sequence()
        .expect("the certs command")
        .iter()
        .skip(3)
        .map(scalar)
        .collect();
    assert_eq!(
        certs["command"].as_sequence().unwrap()[..3]
            .iter()
            .map(scalar)
            .collect::<Vec<_>>(),
        ["certs", "--dir", "/certs"]
    );
    let node_names: BTreeSet<String> = nodes.iter().map(|(n, _, _)| n.clone()).collect();
    assert_eq!(made, node_names);
    let mut names = BTreeSet::new();
    let mut producers = 0;
    let mut consumers = 0;
    let mut coordinators = BTreeSet::new();
    let mut listen_ports = BTreeMap::new();
    let mut peers_of = BTreeMap::new();
    for (service, vars, spec) in &nodes {
        let config = Config::parse(CLUSTER_TOML, vars.iter().cloned())
            .unwrap_or_else(|e| panic!("{service}: {e}"));
        let lookup = |var: &str| {
            vars.iter()
                .find(|(k, _)| k == var)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        config
            .cluster
            .cookie(lookup)
            .unwrap_or_else(|e| panic!("{service}: {e}"));
        assert!(
            lookup(&config.admin.token_env).is_some(),
            "{service}: the admin token variable `{}` is set",
            config.admin.token_env
        );
        assert_eq!(
            &config.node.name, service,
            "node.name is the service name (its host name)"
        );
        assert_eq!(spec["hostname"].as_str(), Some(service.as_str()));
        // Mutual TLS between nodes, with this node's own files.
        config
            .cluster
            .check_transport()
            .unwrap_or_else(|e| panic!("{service}: {e}"));
        assert_eq!(
            config.cluster.transport,
            candela_node::config::Transport::Tls,
            "{service}"
        );
        let tls = config.cluster.tls.as_ref().expect("TLS files");
        assert_eq!(tls.ca, std::path::Path::new("/certs/ca.pem"));
        assert_eq!(
            tls.cert,
            std::path::PathBuf::from(format!("/certs/{service}.pem"))
        );
        assert_eq!(
            tls.key,
            std::path::PathBuf::from(format!("/certs/{service}.key"))
        );
        assert!(
            spec["volumes"]
                .as_sequence()
                .is_some_and(|v| v.iter().any(|m| scalar(m) == "certs:/certs:ro")),
            "{service} mounts the certificates read-only"
        );
        assert!(names.insert(config.node.name.clone()));
        producers += usize::from(config.has(Role::Producer));
        consumers += usize::from(config.has(Role::Consumer));
        if config.has(Role::Coordinator) {
            coordinators.insert(service.clone());
        }
        // Every service it talks to exists in the file.
        for broker in &config.kafka.brokers {
            let host = broker.split(':').next().unwrap();
            assert!(services.contains(host), "{service}: broker {broker}");
        }
        let pg_host = config
            .postgres
            .url
            .split('@')
            .nth(1)
            .unwrap()
            .split(':')
            .next()
            .unwrap();
        assert!(
            services.contains(pg_host),
            "{service}: {}",
            config.postgres.url
        );
        let redis_host = config
            .redis
            .url
            .trim_start_matches("redis://")
            .split(':')
            .next()
            .unwrap();
        assert!(
            services.contains(redis_host),
            "{service}: {}",
            config.redis.url
        );
        listen_ports.insert(service.clone(), config.cluster.listen.port());
        peers_of.insert(service.clone(), config.cluster.peers());
        let command: Vec<String> = spec["command"]
            .as_sequence()
            .expect("command")
            .iter()
            .map(scalar)
            .collect();
        assert_eq!(command, ["node", "--config", CONFIG_IN_IMAGE], "{service}");
    }
    assert_eq!(producers, 1, "one source: exactly one producer node");
    assert!(consumers >= 2, "consumers share a group");
    assert!(
        coordinators.len() >= 2,
        "the coordinator role on at least two nodes (one active, the others standing by): {coordinators:?}"
    );
    // A full mesh: each node lists every other, at its cluster port.
    for (service, peers) in &peers_of {
        let listed: BTreeSet<&str> = peers.iter().map(|p| p.name.as_str()).collect();
        let others: BTreeSet<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| n != service)
            .collect();
        assert_eq!(listed, others, "{service}'s peers");
        for p in peers {
            assert_eq!(
                p.addr,
                format!("{}:{}", p.name, listen_ports[&p.name]),
                "{service}"
            );
        }
    }
    // The image has the binary and the configuration the commands name.
    assert!(DOCKERFILE.contains(&format!("COPY cluster.toml {CONFIG_IN_IMAGE}")));
    assert!(DOCKERFILE.contains("ENTRYPOINT [\"candela\"]"));
    assert!(DOCKERFILE.contains("-p candela-node --bin candela"));
}

#[test]
fn compose_refuses_to_start_without_the_secrets() {
    for missing in [
        "CANDELA_CLUSTER_COOKIE",
        "CANDELA_ADMIN_TOKEN",
        "POSTGRES_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
    ] {
        let mut env = deployer_env();
        env.remove(missing);
        let doc = compose();
        let failed = doc["services"]
            .as_mapping()
            .unwrap()
            .values()
            .filter_map(|s| s["environment"].as_mapping())
            .flat_map(|m| m.values())
            .any(|v| interpolate(&scalar(v), &env).is_err_and(|e| e.starts_with(missing)));
        assert!(failed, "compose must refuse to start without {missing}");
    }
}

/// The compose tool: the `docker compose` plugin, or Debian's
/// `docker-compose`, whichever answers.
fn compose_tool() -> Option<Vec<&'static str>> {
    let answers = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if answers("docker", &["compose", "version"]) {
        Some(vec!["docker", "compose"])
    } else if answers("docker-compose", &["version"]) {
        Some(vec!["docker-compose"])
    } else {
        None
    }
}

/// Every variable the compose file reads from the deployer's environment.
fn variables_of_the_file() -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    let mut rest = COMPOSE;
    while let Some(start) = rest.find("${") {
        let end = rest[start..].find('}').expect("closed `${`");
        let expr = &rest[start + 2..start + end];
        let name = expr.split([':', '-', '?']).next().unwrap_or(expr);
        vars.insert(name.to_owned());
        rest = &rest[start + end + 1..];
    }
    vars
}

/// `<tool> -f compose/docker-compose.yml config` with exactly `env` of the
/// file's variables set: (success, stdout, stderr).
fn compose_config(tool: &[&str], env: &BTreeMap<&str, &str>) -> (bool, String, String) {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../compose/docker-compose.yml");
    let mut command = Command::new(tool[0]);
    command.args(&tool[1..]).args(["-f", file, "config"]);
    for var in variables_of_the_file() {
        command.env_remove(var);
    }
    command.envs(env.iter());
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {tool:?}: {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_compose_tool_accepts_the_file_and_reads_it_as_this_test_does() {
    let Some(tool) = compose_tool() else {
        panic!(
            "neither `docker compose` nor `docker-compose` is installed, so compose/docker-compose.yml \
             cannot be validated: run `bash scripts/services` (it installs Debian's docker-compose)"
        );
    };
    let env = deployer_env();
    let (ok, stdout, stderr) = compose_config(&tool, &env);
    assert!(
        ok,
        "`{} -f compose/docker-compose.yml config` refused the file:\n{stderr}",
        tool.join(" ")
    );
    // The tool's rendering: every candela node with the environment this
    // test fed through the configuration loader.
    let rendered: Value = serde_yaml::from_str(&stdout).expect("the tool prints YAML");
    let services = rendered["services"].as_mapping().expect("services");
    let mut coordinators = BTreeSet::new();
    for (service, vars, _) in &nodes(&env) {
        let theirs: BTreeMap<String, String> = services
            .get(Value::String(service.clone()))
            .unwrap_or_else(|| panic!("the tool lists no service {service}"))["environment"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{service}: environment"))
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::Null => String::new(),
                    v => scalar(v),
                };
                (scalar(k), v)
            })
            .collect();
        let expected: BTreeMap<String, String> = vars.iter().cloned().collect();
        assert_eq!(theirs, expected, "{service}: the tool's environment");
        let config = Config::parse(CLUSTER_TOML, vars.iter().cloned())
            .unwrap_or_else(|e| panic!("{service}: {e}"));
        if config.has(Role::Coordinator) {
            coordinators.insert(service.clone());
        }
    }
    assert!(
        coordinators.len() >= 2,
        "the tool sees the coordinator role on at least two nodes: {coordinators:?}"
    );
    // And, like the interpolation above, it refuses to go on without a secret.
    let mut without = env.clone();
    without.remove("CANDELA_ADMIN_TOKEN");
    let (ok, _, stderr) = compose_config(&tool, &without);
    assert!(
        !ok,
        "the tool accepted the file without CANDELA_ADMIN_TOKEN"
    );
    assert!(stderr.contains("CANDELA_ADMIN_TOKEN"), "{stderr}");
}
