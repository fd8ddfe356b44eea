//! The command line (clap derive). With no arguments: the default run
//! against an embedded Starling.

use std::path::PathBuf;

use clap::Parser;

use crate::run::{Background, Plan};
use crate::session::{Mech, Mechanism};

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        Ok(_) => Err("must be greater than zero".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() => Ok(v),
        Ok(_) => Err("must not be negative".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Thousands of real XMPP sessions against a server, publishing microblog
/// posts through a follow graph, with latency histograms and loss
/// accounting.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
pub struct Cli {
    /// Sessions (one account each).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(2..))]
    pub sessions: u32,
    /// Users followed by every other user, posting at --rate.
    #[arg(long, default_value_t = 1)]
    pub celebrities: u32,
    /// The background follow graph.
    #[arg(long, value_enum, default_value_t = Background::Uniform)]
    pub background: Background,
    /// Follows per user in the background graph.
    #[arg(long, default_value_t = 10)]
    pub follows: u32,
    /// Exponent of the zipf background graph.
    #[arg(long = "zipf-s", default_value_t = 1.0, value_parser = positive)]
    pub zipf_s: f64,
    /// How followers follow: mutual presence subscription with +notify
    /// caps, an explicit XEP-0060 subscribe, or direct messages from the
    /// publisher (the client-side fan-out baseline).
    #[arg(long, value_enum, default_value_t = Mechanism::Presence)]
    pub mechanism: Mechanism,
    /// Celebrity posts per second, open loop.
    #[arg(long, default_value_t = 10.0, value_parser = positive)]
    pub rate: f64,
    /// Background posts per second (random users with followers); 0 for
    /// none.
    #[arg(long = "background-rate", default_value_t = 20.0, value_parser = non_negative)]
    pub background_rate: f64,
    /// Instead of a rate: N celebrity posts at one instant.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub burst: Option<u32>,
    /// Bytes of text in each post.
    #[arg(long, default_value_t = 200)]
    pub payload: usize,
    /// Seconds of publishing, warm-up included.
    #[arg(long, default_value_t = 30.0, value_parser = positive)]
    pub duration: f64,
    /// Seconds of publishing left out of the figures.
    #[arg(long, default_value_t = 5.0, value_parser = non_negative)]
    pub warmup: f64,
    /// Logins started per second.
    #[arg(long, default_value_t = 5000.0, value_parser = positive)]
    pub ramp: f64,
    /// SASL mechanism.
    #[arg(long, value_enum, default_value_t = Mech::ScramSha1)]
    pub mech: Mech,
    /// Loopback source addresses (127.0.0.1..N) to spread connections over.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..))]
    pub sources: u8,
    /// Seed for the follow graph and the background publishers.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Log in, stay idle, and measure the server's memory per session.
    #[arg(long)]
    pub idle: bool,
    /// Fan-out strategy of the embedded Starling.
    #[arg(long, default_value = "shared")]
    pub fanout: String,
    /// Run the embedded Starling as a child process (automatic when one
    /// process cannot hold both ends of every connection).
    #[arg(long = "spawn-server")]
    pub spawn_server: bool,
    /// The `starling` binary for --spawn-server (default: next to loadgen).
    #[arg(long = "starling-bin", value_name = "PATH")]
    pub starling_bin: Option<PathBuf>,
    /// Also write the run record to this JSON file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Save the run (JSON, .hgrm, report, command) into this directory,
    /// for results that are kept (e.g. results/NAME).
    #[arg(long, value_name = "DIR")]
    pub save: Option<PathBuf>,
    /// No live progress.
    #[arg(long)]
    pub quiet: bool,
    /// Where runs are kept (default: results/runs/, git-ignored).
    #[arg(long = "runs-dir", value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
}

impl Cli {
    /// The plan these flags describe.
    pub fn plan(&self) -> Plan {
        Plan {
            sessions: self.sessions as usize,
            celebrities: self.celebrities as usize,
            background: self.background,
            follows: self.follows as usize,
            zipf_s: self.zipf_s,
            mechanism: self.mechanism,
            rate: self.rate,
            background_rate: self.background_rate,
            burst: self.burst,
            payload: self.payload,
            duration_s: self.duration,
            warmup_s: self.warmup.min(self.duration / 2.0),
            ramp: self.ramp,
            mech: self.mech,
            sources: self.sources,
            seed: self.seed,
            idle: self.idle,
        }
    }
}
