//! What to probe (`--probe KIND:PORT`, `--probe-connections`,
//! `--probe-interval`) and the bounds every loop of the probe keeps.

use std::str::FromStr;
use std::time::Duration;

/// The protocol the probe speaks to the service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ProbeKind {
    /// A line sent, the same line echoed back.
    Tcp,
    /// `GET path` over HTTP/1.1 keep-alive; a 2xx status is a success.
    Http { path: String },
    /// RESP `INCR` on a key of the connection's own; an integer reply is a
    /// success, and the key's final value proves no write lost or repeated.
    Redis,
}

impl ProbeKind {
    pub fn name(&self) -> &'static str {
        match self {
            ProbeKind::Tcp => "tcp",
            ProbeKind::Http { .. } => "http",
            ProbeKind::Redis => "redis",
        }
    }
}

/// Why a probe's description was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("--probe takes KIND:PORT (e.g. tcp:7000, http:8080/health, redis:6379), not '{0}'")]
    Shape(String),
    #[error("unknown probe kind '{0}': expected tcp, http or redis")]
    UnknownKind(String),
    #[error("bad probe port '{0}': expected a number from 1 to 65535")]
    BadPort(String),
    #[error("a path is only for http probes (got '{0}')")]
    PathNotHttp(String),
    #[error("bad http path '{0}': it must start with '/', hold no spaces or control characters and be at most 1024 bytes")]
    BadPath(String),
    #[error("the probe needs at least 1 connection")]
    NoConnections,
    #[error("at most {max} probe connections (got {got})")]
    TooManyConnections { got: usize, max: usize },
    #[error("the probe's interval must be at least 1 ms (got {0:?})")]
    BadInterval(Duration),
}

/// A probe: its kind, the service's port, how many persistent connections
/// and how often each sends a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub kind: ProbeKind,
    pub port: u16,
    pub connections: usize,
    pub interval: Duration,
}

pub const DEFAULT_CONNECTIONS: usize = 4;
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(10);
/// More would measure the client's machine rather than the service.
pub const MAX_CONNECTIONS: usize = 1024;
const MAX_PATH: usize = 1024;

impl ProbeSpec {
    /// A probe with the default connections and interval.
    pub fn new(kind: ProbeKind, port: u16) -> Self {
        ProbeSpec {
            kind,
            port,
            connections: DEFAULT_CONNECTIONS,
            interval: DEFAULT_INTERVAL,
        }
    }

    pub fn with_connections(mut self, connections: usize) -> Result<Self, SpecError> {
        self.connections = connections;
        self.validate()?;
        Ok(self)
    }

    pub fn with_interval(mut self, interval: Duration) -> Result<Self, SpecError> {
        self.interval = interval;
        self.validate()?;
        Ok(self)
    }

    /// The checks parsing makes, for a spec built field by field.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.port == 0 {
            return Err(SpecError::BadPort("0".into()));
        }
        if self.connections == 0 {
            return Err(SpecError::NoConnections);
        }
        if self.connections > MAX_CONNECTIONS {
            return Err(SpecError::TooManyConnections {
                got: self.connections,
                max: MAX_CONNECTIONS,
            });
        }
        // A zero period would make tokio's interval panic, and a request
        // every few µs would measure the client, not the service.
        if self.interval < Duration::from_millis(1) {
            return Err(SpecError::BadInterval(self.interval));
        }
        if let ProbeKind::Http { path } = &self.kind {
            check_path(path)?;
        }
        Ok(())
    }
}

impl FromStr for ProbeSpec {
    type Err = SpecError;

    /// `KIND:PORT`, with `/path` after the port for http (default `/`).
    fn from_str(text: &str) -> Result<Self, SpecError> {
        let (kind, rest) = text
            .split_once(':')
            .ok_or_else(|| SpecError::Shape(text.into()))?;
        let (port, path) = match rest.find('/') {
            Some(at) => (&rest[..at], Some(&rest[at..])),
            None => (rest, None),
        };
        let kind = match (kind.to_ascii_lowercase().as_str(), path) {
            ("tcp", None) => ProbeKind::Tcp,
            ("redis", None) => ProbeKind::Redis,
            ("http", path) => ProbeKind::Http {
                path: path.unwrap_or("/").into(),
            },
            ("tcp" | "redis", Some(path)) => return Err(SpecError::PathNotHttp(path.into())),
            _ => return Err(SpecError::UnknownKind(kind.into())),
        };
        let port = parse_port(port)?;
        let spec = ProbeSpec::new(kind, port);
        spec.validate()?;
        Ok(spec)
    }
}

fn parse_port(text: &str) -> Result<u16, SpecError> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 && !text.starts_with('+') => Ok(port),
        _ => Err(SpecError::BadPort(text.into())),
    }
}

/// The path goes into the request line as it is: a space or a control
/// character would change the request's meaning.
fn check_path(path: &str) -> Result<(), SpecError> {
    let bad = !path.starts_with('/')
        || path.len() > MAX_PATH
        || path.chars().any(|c| c.is_whitespace() || c.is_control());
    if bad {
        return Err(SpecError::BadPath(path.into()));
    }
    Ok(())
}

/// How long the probe waits for anything, so that no loop runs forever.
#[derive(Debug, Clone)]
pub struct ProbeLimits {
    /// A request with no reply by then is unknown and its connection is
    /// replaced.
    pub reply_timeout: Duration,
    /// One connection attempt.
    pub connect_timeout: Duration,
    /// Between two connection attempts.
    pub reconnect_every: Duration,
    /// How long a lost connection is retried before the probe gives it up.
    pub reconnect_for: Duration,
    /// After the stop, how long a request in flight may still take.
    pub stop_grace: Duration,
    /// Reading the final counters and deleting the keys after the stop.
    pub settle_timeout: Duration,
    /// The redis keys' prefix; None: `ckpt-probe:<pid>-<random>`, unique
    /// to the run.
    pub key_prefix: Option<String>,
}

impl Default for ProbeLimits {
    fn default() -> Self {
        ProbeLimits {
            reply_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            reconnect_every: Duration::from_millis(5),
            reconnect_for: Duration::from_secs(30),
            stop_grace: Duration::from_secs(2),
            settle_timeout: Duration::from_secs(10),
            key_prefix: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ProbeSpec, SpecError> {
        text.parse()
    }

    #[test]
    fn parses_each_kind_with_defaults() {
        let tcp = parse("tcp:7000").unwrap();
        assert_eq!(tcp.kind, ProbeKind::Tcp);
        assert_eq!(tcp.port, 7000);
        assert_eq!(tcp.connections, 4);
        assert_eq!(tcp.interval, Duration::from_millis(10));
        assert_eq!(parse("redis:6379").unwrap().kind, ProbeKind::Redis);
        assert_eq!(parse("REDIS:6379").unwrap().kind, ProbeKind::Redis);
    }

    #[test]
    fn http_path_defaults_to_root() {
        let root = parse("http:8080").unwrap();
        assert_eq!(root.kind, ProbeKind::Http { path: "/".into() });
        assert_eq!(root.port, 8080);
        let health = parse("http:8080/health?full=1").unwrap();
        assert_eq!(
            health.kind,
            ProbeKind::Http {
                path: "/health?full=1".into()
            }
        );
    }

    #[test]
    fn refuses_bad_input_with_the_reason() {
        assert_eq!(parse("tcp"), Err(SpecError::Shape("tcp".into())));
        assert_eq!(parse("udp:53"), Err(SpecError::UnknownKind("udp".into())));
        assert_eq!(parse(":53"), Err(SpecError::UnknownKind("".into())));
        for port in ["0", "65536", "", "x", "-1", "+80", "80 "] {
            assert_eq!(
                parse(&format!("tcp:{port}")),
                Err(SpecError::BadPort(port.into())),
                "{port}"
            );
        }
        assert_eq!(
            parse("tcp:7000/x"),
            Err(SpecError::PathNotHttp("/x".into()))
        );
        assert_eq!(parse("http:80/a b"), Err(SpecError::BadPath("/a b".into())));
        assert_eq!(parse("http:/x"), Err(SpecError::BadPort("".into())));
    }

    #[test]
    fn refuses_zero_connections_and_interval() {
        let spec = parse("tcp:7000").unwrap();
        assert_eq!(
            spec.clone().with_connections(0),
            Err(SpecError::NoConnections)
        );
        assert_eq!(spec.clone().with_connections(8).unwrap().connections, 8);
        assert!(matches!(
            spec.clone().with_connections(100_000),
            Err(SpecError::TooManyConnections { .. })
        ));
        assert_eq!(
            spec.clone().with_interval(Duration::ZERO),
            Err(SpecError::BadInterval(Duration::ZERO))
        );
        let every_5ms = spec.with_interval(Duration::from_millis(5)).unwrap();
        assert_eq!(every_5ms.interval, Duration::from_millis(5));
    }

    #[test]
    fn errors_read_well() {
        let message = parse("udp:53").unwrap_err().to_string();
        assert!(message.contains("tcp, http or redis"), "{message}");
    }
}
