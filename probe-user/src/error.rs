//! Typed errors of the library, each with the exit code the CLI uses.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error(
        "unknown interface {name:?} in network namespace {netns}; interfaces there: {available}"
    )]
    UnknownInterface {
        name: String,
        netns: String,
        available: String,
    },
    #[error("network namespace {name:?} not found ({detail}); named namespaces live in /run/netns (see `ip netns list`)")]
    NetnsNotFound { name: String, detail: String },
    #[error("cannot enter network namespace {name}: {source}")]
    NetnsEnter {
        name: String,
        source: std::io::Error,
    },
    #[error(
        "no NIC to watch: network namespace {netns} has no default route; name one with --iface"
    )]
    NoDefaultRoute { netns: String },
    #[error("invalid option: {0}")]
    Usage(String),
    #[error("missing privilege: {missing}. Run as root, or grant these capabilities (e.g. securityContext.capabilities.add)")]
    MissingCapabilities { missing: String },
    #[error("{0}")]
    Runtime(String),
    /// A hook that had to work (reading its counters) failed: a
    /// `hooks::HookError` (boxed: this module sits below the hooks).
    #[error(transparent)]
    Hook(Box<dyn std::error::Error + Send + Sync>),
}

impl ProbeError {
    /// 2 for bad usage (the command line names something that does not
    /// exist or does not fit), 1 for everything that failed at run time.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::UnknownInterface { .. }
            | Self::NetnsNotFound { .. }
            | Self::NoDefaultRoute { .. }
            | Self::Usage(_) => 2,
            Self::NetnsEnter { .. }
            | Self::MissingCapabilities { .. }
            | Self::Runtime(_)
            | Self::Hook(_) => 1,
        }
    }
}
