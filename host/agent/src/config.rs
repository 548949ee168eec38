//! Agent settings: a TOML file overridden by command-line flags, validated
//! into a [`Config`] before anything starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use nodeplane_entry::MAX_AUTHOR_LEN;
use nodeplane_runtime::Tunables;
use serde::Deserialize;

/// The component run when none is configured.
pub const DEFAULT_COMPONENT: &str = "nodeplane";

/// Why the settings are unusable; every variant names the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for the agent.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said (it names the line and the setting).
        message: String,
    },
    /// A setting is missing or has a bad value.
    #[error("setting `{setting}`: {problem}")]
    Invalid {
        /// The setting, as named in the file.
        setting: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

fn invalid(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        problem: problem.into(),
    }
}

/// The settings as written in the TOML file; every field is optional so
/// that flags can supply or override it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Stable node identity.
    pub node_id: Option<String>,
    /// Control-channel listen address (UDP and TCP), `ip:port`.
    pub listen: Option<String>,
    /// Introspection/compatibility API address, `ip:port`.
    pub api: Option<String>,
    /// Seed control addresses to join through.
    pub seeds: Option<Vec<String>>,
    /// Directory of the ledger store and the event log.
    pub data_dir: Option<PathBuf>,
    /// `nodeplane`, `stub` or the path of a component file.
    pub component: Option<String>,
    /// Metadata offered to peers.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Protocol tunables (0 or absent = the component's default).
    pub tunables: Option<Tunables>,
    /// Leave gracefully on SIGTERM/SIGINT (default true).
    pub leave_on_shutdown: Option<bool>,
    /// Bearer token admin endpoints require (otherwise loopback only).
    pub admin_token: Option<String>,
    /// File holding the cluster key (base64 of 32 bytes, `nodeplane
    /// keygen`); not readable by others. It initialises the keyring in the
    /// data directory on first start (see [`crate::keyring`]).
    pub cluster_key_file: Option<PathBuf>,
}

impl FileConfig {
    /// Reads and parses a configuration file.
    pub fn read(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        FileConfig::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses configuration text.
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    /// Settings from `over` replace those here; seeds and metadata given
    /// as flags replace the file's lists, metadata keys merge.
    pub fn overridden_by(mut self, over: FileConfig) -> FileConfig {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f; } )* };
        }
        take!(
            node_id,
            listen,
            api,
            seeds,
            data_dir,
            component,
            tunables,
            leave_on_shutdown,
            admin_token,
            cluster_key_file
        );
        if let Some(extra) = over.metadata {
            self.metadata
                .get_or_insert_with(BTreeMap::new)
                .extend(extra);
        }
        self
    }

    /// Checks every setting and produces the agent's configuration.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let node_id = self
            .node_id
            .ok_or_else(|| invalid("node_id", "missing (set it in the file or with --node-id)"))?;
        validate_node_id(&node_id)?;
        let listen_text = self
            .listen
            .ok_or_else(|| invalid("listen", "missing (set it in the file or with --listen)"))?;
        let listen = parse_addr("listen", &listen_text)?;
        if listen.ip().is_unspecified() {
            return Err(invalid(
                "listen",
                format!("{listen}: must be an address peers can reach, not an unspecified (0.0.0.0/::) one"),
            ));
        }
        if listen.port() == 0 {
            return Err(invalid(
                "listen",
                format!("{listen}: port 0 is not allowed (peers need a fixed port)"),
            ));
        }
        let api_text = self
            .api
            .ok_or_else(|| invalid("api", "missing (set it in the file or with --api)"))?;
        let api = parse_addr("api", &api_text)?;
        if api == listen {
            return Err(invalid(
                "api",
                format!("{api} is also the control listen address"),
            ));
        }
        let mut seeds = Vec::new();
        for seed in self.seeds.unwrap_or_default() {
            let addr = parse_addr("seeds", &seed)?;
            if addr.port() == 0 || addr.ip().is_unspecified() {
                return Err(invalid(
                    "seeds",
                    format!("{seed:?}: not a reachable address"),
                ));
            }
            if addr != listen && !seeds.contains(&addr) {
                seeds.push(addr);
            }
        }
        let data_dir = self.data_dir.ok_or_else(|| {
            invalid(
                "data_dir",
                "missing (set it in the file or with --data-dir)",
            )
        })?;
        if data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "empty path"));
        }
        if data_dir.exists() && !data_dir.is_dir() {
            return Err(invalid(
                "data_dir",
                format!("{} exists and is not a directory", data_dir.display()),
            ));
        }
        let component = self
            .component
            .unwrap_or_else(|| DEFAULT_COMPONENT.to_string());
        if component.trim().is_empty() {
            return Err(invalid(
                "component",
                "empty (use nodeplane, stub or a file path)",
            ));
        }
        if let Err(e) = nodeplane_artifacts::exists(&component) {
            return Err(invalid("component", e.to_string()));
        }
        let mut metadata = Vec::new();
        for (key, value) in self.metadata.unwrap_or_default() {
            if key.is_empty() || key.len() > 64 {
                return Err(invalid(
                    "metadata",
                    format!("key {key:?} must be 1..=64 bytes"),
                ));
            }
            if value.len() > 256 {
                return Err(invalid(
                    "metadata",
                    format!("value of {key:?} exceeds 256 bytes"),
                ));
            }
            metadata.push((key, value));
        }
        let admin_token = match self.admin_token {
            Some(t) if t.is_empty() || t.chars().any(char::is_whitespace) => {
                return Err(invalid(
                    "admin_token",
                    "must be non-empty and contain no whitespace",
                ));
            }
            other => other,
        };
        let cluster_key = match &self.cluster_key_file {
            None => None,
            Some(path) if path.as_os_str().is_empty() => {
                return Err(invalid("cluster_key_file", "empty path"));
            }
            Some(path) => {
                Some(crate::seal::read_key_file(path).map_err(|e| invalid("cluster_key_file", e))?)
            }
        };
        Ok(Config {
            node_id,
            listen,
            api,
            seeds,
            data_dir,
            component,
            metadata,
            tunables: self.tunables.unwrap_or_default(),
            leave_on_shutdown: self.leave_on_shutdown.unwrap_or(true),
            admin_token,
            cluster_key,
        })
    }
}

fn validate_node_id(id: &str) -> Result<(), ConfigError> {
    if id.is_empty() || id.len() > MAX_AUTHOR_LEN {
        return Err(invalid(
            "node_id",
            format!("{id:?} must be 1..={MAX_AUTHOR_LEN} bytes"),
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(invalid(
            "node_id",
            format!("{id:?} contains {bad:?}; use letters, digits, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

fn parse_addr(setting: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|_| invalid(setting, format!("{text:?} is not an ip:port address")))
}

/// The validated agent configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Stable node identity.
    pub node_id: String,
    /// Control-channel address (UDP and TCP), also this node's address.
    pub listen: SocketAddr,
    /// Address of the HTTP API.
    pub api: SocketAddr,
    /// Seeds to join through (this node's own address removed).
    pub seeds: Vec<SocketAddr>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Built-in component name or component file path.
    pub component: String,
    /// Metadata offered to peers, sorted by key.
    pub metadata: Vec<(String, String)>,
    /// Protocol tunables.
    pub tunables: Tunables,
    /// Leave gracefully on shutdown.
    pub leave_on_shutdown: bool,
    /// Bearer token for admin endpoints.
    pub admin_token: Option<String>,
    /// The configured cluster key (from `cluster_key_file`), if any.
    pub cluster_key: Option<crate::seal::ClusterKey>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> FileConfig {
        FileConfig::parse(
            r#"
node_id = "n1"
listen = "127.0.0.1:7001"
api = "127.0.0.1:8001"
seeds = ["127.0.0.2:7001", "127.0.0.1:7001"]
data_dir = "/tmp/np-n1"
component = "stub"
[metadata]
overlay-ip = "10.0.0.1"
[tunables]
probe_interval_ms = 250
"#,
        )
        .expect("parses")
    }

    #[test]
    fn file_parses_and_validates() {
        let c = base().validate().expect("valid");
        assert_eq!(c.node_id, "n1");
        assert_eq!(
            c.seeds,
            vec!["127.0.0.2:7001".parse().unwrap()],
            "own address dropped"
        );
        assert_eq!(c.tunables.probe_interval_ms, 250);
        assert_eq!(c.tunables.probe_timeout_ms, 0);
        assert!(c.leave_on_shutdown);
        assert_eq!(c.metadata, vec![("overlay-ip".into(), "10.0.0.1".into())]);
    }

    #[test]
    fn flags_override_file() {
        let flags = FileConfig {
            listen: Some("127.0.0.9:7009".into()),
            seeds: Some(vec![]),
            metadata: Some([("zone".to_string(), "a".to_string())].into()),
            ..FileConfig::default()
        };
        let c = base().overridden_by(flags).validate().expect("valid");
        assert_eq!(c.listen.to_string(), "127.0.0.9:7009");
        assert!(c.seeds.is_empty());
        assert_eq!(c.metadata.len(), 2);
        assert_eq!(c.node_id, "n1");
    }

    #[test]
    fn unknown_settings_are_named() {
        let err = FileConfig::parse("node_id = \"a\"\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(err.contains("listen_addr"), "{err}");
        let err = FileConfig::parse("[tunables]\nprobe_every = 3\n").unwrap_err();
        assert!(err.contains("probe_every"), "{err}");
        let err = FileConfig::parse("listen = 7\n").unwrap_err();
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn bad_or_missing_settings_are_named() {
        let check = |f: FileConfig, setting: &str| {
            let err = f.validate().unwrap_err().to_string();
            assert!(err.starts_with(&format!("setting `{setting}`")), "{err}");
        };
        check(
            FileConfig {
                node_id: None,
                ..base()
            },
            "node_id",
        );
        check(
            FileConfig {
                node_id: Some("a b".into()),
                ..base()
            },
            "node_id",
        );
        check(
            FileConfig {
                listen: Some("nowhere".into()),
                ..base()
            },
            "listen",
        );
        check(
            FileConfig {
                listen: Some("0.0.0.0:7001".into()),
                ..base()
            },
            "listen",
        );
        check(
            FileConfig {
                api: None,
                ..base()
            },
            "api",
        );
        check(
            FileConfig {
                seeds: Some(vec!["x:1".into()]),
                ..base()
            },
            "seeds",
        );
        check(
            FileConfig {
                data_dir: None,
                ..base()
            },
            "data_dir",
        );
        check(
            FileConfig {
                component: Some("/no/such.wasm".into()),
                ..base()
            },
            "component",
        );
        check(
            FileConfig {
                admin_token: Some("".into()),
                ..base()
            },
            "admin_token",
        );
        check(
            FileConfig {
                cluster_key_file: Some("/no/such/key".into()),
                ..base()
            },
            "cluster_key_file",
        );
    }
}
