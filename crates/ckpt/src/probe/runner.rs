//! Runs a probe: C persistent connections, each sending one request every
//! interval and waiting for its reply, reconnecting when lost, until told
//! to stop; then, for redis, reads the final counters and deletes the keys.

use super::counters;
use super::kinds::{Exchange, Reply};
use super::log::{micros_between, ConnectionLog, Outcome, ProbeLog, RequestRecord};
use super::spec::{ProbeKind, ProbeLimits, ProbeSpec};
use anyhow::Context;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{interval, sleep, timeout, Instant as TokioInstant, MissedTickBehavior};

/// A connection as the probe uses it: buffered reads, direct writes.
pub(super) type Conn = BufReader<TcpStream>;

/// Everything a connection's task shares with the others.
struct Shared {
    spec: ProbeSpec,
    limits: ProbeLimits,
    addr: SocketAddr,
    /// The one clock every time is read on.
    started: Instant,
}

/// A probe that is running; `stop` ends it and returns its log. Dropped
/// without `stop`, its connections end too, but redis keys are left.
pub struct RunningProbe {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<ConnectionRun>>,
    keys: Vec<Option<String>>,
}

/// What one connection's task recorded.
struct ConnectionRun {
    log: ConnectionLog,
    requests: Vec<RequestRecord>,
}

/// Connects the probe's connections (redis: deletes their keys so each
/// counter starts at 0) and starts them. Fails when the service cannot be
/// reached within the limits' bounds.
pub async fn start(
    spec: &ProbeSpec,
    addr: SocketAddr,
    limits: ProbeLimits,
) -> anyhow::Result<RunningProbe> {
    spec.validate()?;
    let started = Instant::now();
    let keys = redis_keys(spec, &limits);
    let shared = Arc::new(Shared {
        spec: spec.clone(),
        limits,
        addr,
        started,
    });
    let (stop, stopped) = watch::channel(false);
    let mut first = Vec::with_capacity(spec.connections);
    for key in &keys {
        let mut conn = connect(&shared, &mut stopped.clone())
            .await
            .with_context(|| format!("probe: cannot connect to {addr}"))?;
        if let Some(key) = key {
            counters::delete(&mut conn, &[key.as_str()], shared.limits.reply_timeout)
                .await
                .with_context(|| format!("probe: cannot delete its key {key} at {addr}"))?;
        }
        first.push(conn);
    }
    let tasks = first
        .into_iter()
        .enumerate()
        .map(|(index, conn)| {
            let task =
                ConnectionTask::new(shared.clone(), index, keys[index].clone(), stopped.clone());
            tokio::spawn(task.run(conn))
        })
        .collect();
    Ok(RunningProbe {
        shared,
        stop,
        tasks,
        keys,
    })
}

/// Redis: a key per connection, under a prefix unique to the run so two
/// probes (or the program's own keys) never share one.
fn redis_keys(spec: &ProbeSpec, limits: &ProbeLimits) -> Vec<Option<String>> {
    let prefix = limits.key_prefix.clone().unwrap_or_else(|| {
        format!(
            "ckpt-probe:{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        )
    });
    (0..spec.connections)
        .map(|index| matches!(spec.kind, ProbeKind::Redis).then(|| format!("{prefix}:{index}")))
        .collect()
}

impl RunningProbe {
    /// The probe clock's zero: `ProbeLog::window` turns the caller's
    /// instants into offsets on it.
    pub fn started(&self) -> Instant {
        self.shared.started
    }

    /// Now on the probe's clock, µs.
    pub fn now_us(&self) -> u64 {
        micros_between(self.shared.started, Instant::now())
    }

    /// Stops every connection (a request in flight gets the limits'
    /// stop_grace), then for redis reads each final counter and deletes the
    /// keys.
    pub async fn stop(self) -> ProbeLog {
        let stopped_us = self.now_us();
        let _ = self.stop.send(true);
        let mut problems = Vec::new();
        let mut connections = Vec::new();
        let mut requests = Vec::new();
        for (index, task) in self.tasks.into_iter().enumerate() {
            match task.await {
                Ok(run) => {
                    connections.push(run.log);
                    requests.extend(run.requests);
                }
                Err(error) => {
                    problems.push(format!(
                        "probe connection {index} ended abnormally: {error}"
                    ));
                }
            }
        }
        requests.sort_by_key(|r| (r.sent_us, r.connection));
        let keys: Vec<&str> = self.keys.iter().flatten().map(String::as_str).collect();
        if !keys.is_empty() {
            settle(&self.shared, &keys, &mut connections, &mut problems).await;
        }
        ProbeLog {
            kind: self.shared.spec.kind.clone(),
            interval_us: self.shared.spec.interval.as_micros() as u64,
            stopped_us,
            requests,
            connections,
            problems,
            started: self.shared.started,
        }
    }
}

/// Reads the final counters and deletes the keys, on a fresh connection
/// (the probe's own may be gone), all within the settle bound.
async fn settle(
    shared: &Shared,
    keys: &[&str],
    connections: &mut [ConnectionLog],
    problems: &mut Vec<String>,
) {
    // A channel never signalled: the stop has been asked already, and
    // this connection must still be made.
    let (_never, mut not_stopped) = watch::channel(false);
    let work = async {
        let mut conn = connect(shared, &mut not_stopped).await?;
        let finals = counters::read(&mut conn, keys, shared.limits.reply_timeout).await?;
        for (key, last) in keys.iter().zip(finals) {
            // By key, not by position: a connection whose task failed has
            // no log.
            let owner = connections
                .iter_mut()
                .find(|c| c.key.as_deref() == Some(*key));
            if let Some(connection) = owner {
                connection.final_counter = Some(last);
            }
        }
        counters::delete(&mut conn, keys, shared.limits.reply_timeout).await
    };
    match timeout(shared.limits.settle_timeout, work).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            problems.push(format!("probe: final counters or key deletion: {error:#}"))
        }
        Err(_) => problems.push(format!(
            "probe: final counters and key deletion took over {:?}",
            shared.limits.settle_timeout
        )),
    }
}

/// Connects, retrying every `reconnect_every` for at most
/// `reconnect_for`, and not at all once stopped.
async fn connect(shared: &Shared, stopped: &mut watch::Receiver<bool>) -> anyhow::Result<Conn> {
    let limits = &shared.limits;
    let deadline = TokioInstant::now() + limits.reconnect_for;
    loop {
        if *stopped.borrow() {
            anyhow::bail!("stopped");
        }
        let error = match timeout(limits.connect_timeout, TcpStream::connect(shared.addr)).await {
            Ok(Ok(stream)) => {
                // One small request at a time: Nagle's delay would be
                // measured as the service's latency.
                stream.set_nodelay(true)?;
                return Ok(BufReader::new(stream));
            }
            Ok(Err(error)) => anyhow::Error::from(error),
            Err(_) => anyhow::anyhow!("no connection within {:?}", limits.connect_timeout),
        };
        if TokioInstant::now() + limits.reconnect_every > deadline {
            return Err(error.context(format!("gave up after {:?}", limits.reconnect_for)));
        }
        tokio::select! {
            _ = wait_stopped(stopped) => {}
            _ = sleep(limits.reconnect_every) => {}
        }
    }
}

/// Returns once the stop is asked (or the probe was dropped).
async fn wait_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// One of the probe's connections.
struct ConnectionTask {
    shared: Arc<Shared>,
    exchange: Exchange,
    stopped: watch::Receiver<bool>,
    log: ConnectionLog,
    requests: Vec<RequestRecord>,
}

/// How one request ended, and whether its connection can carry the next.
struct Sent {
    record: RequestRecord,
    reusable: bool,
}

impl ConnectionTask {
    fn new(
        shared: Arc<Shared>,
        index: usize,
        key: Option<String>,
        stopped: watch::Receiver<bool>,
    ) -> Self {
        let host = shared.addr.to_string();
        let exchange = Exchange::new(
            &shared.spec.kind,
            index,
            &host,
            key.as_deref().unwrap_or(""),
        );
        ConnectionTask {
            shared,
            exchange,
            stopped,
            log: ConnectionLog {
                index,
                generations: 1,
                gave_up: false,
                key,
                final_counter: None,
            },
            requests: Vec::new(),
        }
    }

    async fn run(mut self, mut conn: Conn) -> ConnectionRun {
        let mut tick = interval(self.shared.spec.interval);
        // After a stall, carry on at the interval rather than in a burst
        // that would load the service just as it comes back.
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        for seq in 0.. {
            if !self.next_tick(&mut tick).await {
                break;
            }
            let sent = self.request(&mut conn, seq).await;
            self.requests.push(sent.record);
            if !sent.reusable {
                match connect(&self.shared, &mut self.stopped).await {
                    Ok(fresh) => conn = fresh,
                    Err(_) => {
                        self.log.gave_up = !*self.stopped.borrow();
                        break;
                    }
                }
                self.log.generations += 1;
            }
        }
        ConnectionRun {
            log: self.log,
            requests: self.requests,
        }
    }

    /// Waits for the next tick; false once stopped.
    async fn next_tick(&mut self, tick: &mut tokio::time::Interval) -> bool {
        tokio::select! {
            biased;
            _ = wait_stopped(&mut self.stopped) => false,
            _ = tick.tick() => true,
        }
    }

    /// Sends request `seq` and waits for its reply, at most the reply
    /// timeout, and after a stop at most the stop grace.
    async fn request(&mut self, conn: &mut Conn, seq: u64) -> Sent {
        let bytes = self.exchange.request(seq);
        let limits = &self.shared.limits;
        let mut stopped = self.stopped.clone();
        let grace = limits.stop_grace;
        let cut = async move {
            wait_stopped(&mut stopped).await;
            sleep(grace).await;
        };
        let sent_us = self.now_us();
        let exchange = &self.exchange;
        let reply = async {
            conn.get_mut().write_all(&bytes).await?;
            exchange.read_reply(conn, seq).await
        };
        let result = tokio::select! {
            result = timeout(limits.reply_timeout, reply) => result.map_err(|_| Ended::Timeout),
            _ = cut => Err(Ended::Stopped),
        };
        let reply_us = self.now_us();
        let record = RequestRecord {
            connection: self.log.index,
            generation: self.log.generations - 1,
            seq,
            sent_us,
            reply_us: None,
            outcome: Outcome::Unknown,
            value: None,
            problem: None,
        };
        self.judge(record, result, reply_us)
    }

    fn judge(
        &self,
        mut record: RequestRecord,
        result: Result<io::Result<Reply>, Ended>,
        reply_us: u64,
    ) -> Sent {
        let reusable = match result {
            Ok(Ok(reply)) => {
                record.reply_us = Some(reply_us);
                record.outcome = if reply.ok {
                    Outcome::Ok
                } else {
                    Outcome::Failed
                };
                record.value = reply.value;
                record.problem = reply.problem;
                !reply.close
            }
            // A reply that could not be framed: it came, it was wrong, and
            // the connection's framing is lost.
            Ok(Err(error)) if error.kind() == io::ErrorKind::InvalidData => {
                record.reply_us = Some(reply_us);
                record.outcome = Outcome::Failed;
                record.problem = Some(error.to_string());
                false
            }
            Ok(Err(error)) => {
                record.problem = Some(format!("connection lost: {error}"));
                false
            }
            Err(Ended::Timeout) => {
                let bound = self.shared.limits.reply_timeout;
                record.problem = Some(format!("no reply within {bound:?}"));
                false
            }
            Err(Ended::Stopped) => {
                record.problem = Some("no reply before the probe stopped".into());
                false
            }
        };
        Sent { record, reusable }
    }

    fn now_us(&self) -> u64 {
        micros_between(self.shared.started, Instant::now())
    }
}

/// Why a request got no reply other than a lost connection.
enum Ended {
    Timeout,
    Stopped,
}
